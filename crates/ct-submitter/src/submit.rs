//! Hedged submission of precertificates to CT logs, and best-effort logging of final
//! certificates.
//!
//! A precertificate needs SCTs from enough logs of enough distinct operators before the final
//! certificate can be issued, and logs are often slow or flaky. So submissions are hedged:
//! as many start at once as are still needed (two with the usual policy), preferring
//! operators not yet covered; another starts on every stagger tick and a failed one is
//! replaced at once; everything else is dropped as soon as the policy holds. An SCT counts
//! only after its signature verifies against the configured key of the log that sent it.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use ct::{AddChainRequest, AddChainResponse, CtError, Sct};
use futures::stream::{FuturesUnordered, StreamExt};
use reqwest::header::CONTENT_TYPE;
use tokio::time::{Instant, MissedTickBehavior};

/// A CT log as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtLog {
    pub name: String,
    /// Base URL, e.g. `https://ct.example/2025h1` or `http://127.0.0.1:1234`.
    pub url: String,
    /// The log's DER SubjectPublicKeyInfo.
    pub public_key_der: Vec<u8>,
    pub operator: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmitPolicy {
    /// Verified SCTs needed.
    pub min_scts: usize,
    /// Distinct log operators those SCTs must come from.
    pub min_operators: usize,
    /// How long to wait before hedging with one more log.
    pub stagger: Duration,
    /// Give up on the whole submission after this long.
    pub deadline: Duration,
    /// Give up on one log after this long (connect to end of body).
    pub per_request_timeout: Duration,
}

impl Default for SubmitPolicy {
    fn default() -> Self {
        Self {
            min_scts: 2,
            min_operators: 2,
            stagger: Duration::from_millis(200),
            deadline: Duration::from_secs(10),
            per_request_timeout: Duration::from_secs(5),
        }
    }
}

/// A verified SCT and the log it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedSct {
    pub log_name: String,
    pub operator: String,
    pub sct: Sct,
}

/// Why one log did not yield a usable SCT.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("timed out")]
    Timeout,
    #[error("request failed: {0}")]
    Transport(String),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("malformed response: {0}")]
    BadResponse(String),
    #[error("SCT does not verify: {0}")]
    BadSct(CtError),
    #[error("still pending when the deadline passed")]
    DeadlinePassed,
}

impl LogError {
    fn from_reqwest(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            return LogError::Timeout;
        }
        // reqwest's own message omits the cause ("connection refused" etc.).
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        LogError::Transport(msg)
    }
}

#[derive(Debug)]
pub struct LogFailure {
    pub log_name: String,
    pub operator: String,
    pub error: LogError,
}

impl fmt::Display for LogFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.log_name, self.operator, self.error)
    }
}

fn list(failures: &[LogFailure]) -> String {
    if failures.is_empty() {
        return "no log failed".to_owned();
    }
    let parts: Vec<String> = failures.iter().map(ToString::to_string).collect();
    format!("failures: {}", parts.join("; "))
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The configuration can never satisfy the policy: not worth retrying.
    #[error(
        "CT policy needs {min_scts} SCTs from {min_operators} operators, but only {logs} logs \
         from {operators} operators are configured"
    )]
    NotEnoughLogs {
        logs: usize,
        operators: usize,
        min_scts: usize,
        min_operators: usize,
    },
    /// Time ran out; logs may just be slow, so a later retry can succeed.
    #[error("CT deadline of {deadline:?} passed with {verified} verified SCTs; {}", list(.failures))]
    DeadlinePassed {
        deadline: Duration,
        verified: usize,
        failures: Vec<LogFailure>,
    },
    /// Every log that could help was tried; a later retry can succeed if they recover.
    #[error("all usable CT logs tried, {verified} verified SCTs do not meet the policy; {}", list(.failures))]
    LogsExhausted {
        verified: usize,
        failures: Vec<LogFailure>,
    },
    #[error("cannot submit this certificate: {0}")]
    InvalidCertificate(#[from] CtError),
    #[error("expected a final certificate but got a precertificate")]
    PrecertificateGiven,
}

impl SubmitError {
    /// The per-log failures behind a deadline or exhaustion error.
    pub fn failures(&self) -> &[LogFailure] {
        match self {
            SubmitError::DeadlinePassed { failures, .. }
            | SubmitError::LogsExhausted { failures, .. } => failures,
            _ => &[],
        }
    }

    /// Whether trying again later may succeed without a configuration or input change.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SubmitError::DeadlinePassed { .. } | SubmitError::LogsExhausted { .. }
        )
    }
}

/// What a log is asked to log, and so what its SCT must sign.
enum Entry<'a> {
    Precert {
        tbs: Vec<u8>,
        issuer_key_hash: [u8; 32],
    },
    X509 {
        cert: &'a [u8],
    },
}

impl Entry<'_> {
    fn path(&self) -> &'static str {
        match self {
            Entry::Precert { .. } => "ct/v1/add-pre-chain",
            Entry::X509 { .. } => "ct/v1/add-chain",
        }
    }

    fn signed_data(&self, sct: &Sct) -> Result<Vec<u8>, CtError> {
        match self {
            Entry::Precert {
                tbs,
                issuer_key_hash,
            } => ct::precert_signed_data(sct.timestamp, issuer_key_hash, tbs, &sct.extensions),
            Entry::X509 { cert } => ct::x509_signed_data(sct.timestamp, cert, &sct.extensions),
        }
    }
}

fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).collect()
}

/// One submission to one log, with the answer verified against that log's key.
async fn submit_to_log(
    client: &reqwest::Client,
    log: &CtLog,
    entry: &Entry<'_>,
    body: &[u8],
    timeout: Duration,
) -> Result<Sct, LogError> {
    let url = format!("{}/{}", log.url.trim_end_matches('/'), entry.path());
    let resp = client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_vec())
        .timeout(timeout)
        .send()
        .await
        .map_err(LogError::from_reqwest)?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(LogError::from_reqwest)?;
    if !status.is_success() {
        return Err(LogError::Status {
            status: status.as_u16(),
            body: snippet(&bytes),
        });
    }
    let parsed: AddChainResponse =
        serde_json::from_slice(&bytes).map_err(|e| LogError::BadResponse(e.to_string()))?;
    let sct = Sct::try_from(&parsed).map_err(|e| LogError::BadResponse(e.to_string()))?;
    let data = entry.signed_data(&sct).map_err(LogError::BadSct)?;
    ct::verify_sct(&sct, &log.public_key_der, &data).map_err(LogError::BadSct)?;
    Ok(sct)
}

/// Log indices ordered round-robin across operators (config order within one), so that
/// consecutive picks spread over operators.
fn interleave_by_operator(logs: &[CtLog]) -> Vec<usize> {
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        match groups.iter_mut().find(|(op, _)| *op == log.operator) {
            Some((_, members)) => members.push(i),
            None => groups.push((&log.operator, vec![i])),
        }
    }
    let rounds = groups.iter().map(|(_, m)| m.len()).max().unwrap_or(0);
    (0..rounds)
        .flat_map(|round| {
            groups
                .iter()
                .filter_map(move |(_, m)| m.get(round).copied())
        })
        .collect()
}

/// Bookkeeping of one hedged precert submission.
struct Hedge<'a> {
    logs: &'a [CtLog],
    policy: &'a SubmitPolicy,
    pending: Vec<usize>,
    in_flight: Vec<usize>,
    scts: Vec<EmbeddedSct>,
    failures: Vec<LogFailure>,
}

impl Hedge<'_> {
    fn covered(&self) -> HashSet<&str> {
        self.scts.iter().map(|s| s.operator.as_str()).collect()
    }

    fn satisfied(&self) -> bool {
        self.scts.len() >= self.policy.min_scts && self.covered().len() >= self.policy.min_operators
    }

    /// Lower bound of further SCTs needed.
    fn still_needed(&self) -> usize {
        let scts = self.policy.min_scts.saturating_sub(self.scts.len());
        let operators = self
            .policy
            .min_operators
            .saturating_sub(self.covered().len());
        scts.max(operators)
    }

    /// Position in `pending` of the most useful log to try next, if any can still help:
    /// first an operator neither covered nor in flight, then one not covered yet, then (only
    /// while SCTs are short) any.
    fn peek_next(&self) -> Option<usize> {
        let covered = self.covered();
        let busy: HashSet<&str> = self
            .in_flight
            .iter()
            .map(|&i| self.logs[i].operator.as_str())
            .collect();
        let operator = |log: &usize| self.logs[*log].operator.as_str();
        let pending = || self.pending.iter();
        pending()
            .position(|l| !covered.contains(operator(l)) && !busy.contains(operator(l)))
            .or_else(|| pending().position(|l| !covered.contains(operator(l))))
            .or_else(|| {
                let more_scts_help = self.scts.len() < self.policy.min_scts;
                (more_scts_help && !self.pending.is_empty()).then_some(0)
            })
    }

    fn take_next(&mut self) -> Option<usize> {
        let pos = self.peek_next()?;
        let index = self.pending.remove(pos);
        self.in_flight.push(index);
        Some(index)
    }

    /// Logs to start so that at least as many are in flight as SCTs are still needed.
    fn top_up(&mut self) -> Vec<usize> {
        let mut started = Vec::new();
        while self.in_flight.len() < self.still_needed() {
            match self.take_next() {
                Some(i) => started.push(i),
                None => break,
            }
        }
        started
    }

    fn finish(&mut self, index: usize, result: Result<Sct, LogError>) {
        self.in_flight.retain(|&i| i != index);
        let log = &self.logs[index];
        match result {
            Ok(sct) => {
                tracing::debug!(log = %log.name, "verified SCT");
                self.scts.push(EmbeddedSct {
                    log_name: log.name.clone(),
                    operator: log.operator.clone(),
                    sct,
                });
            }
            Err(error) => {
                tracing::warn!(log = %log.name, %error, "CT log submission failed");
                self.failures.push(LogFailure {
                    log_name: log.name.clone(),
                    operator: log.operator.clone(),
                    error,
                });
            }
        }
    }

    fn deadline_error(mut self) -> SubmitError {
        for &i in &self.in_flight {
            self.failures.push(LogFailure {
                log_name: self.logs[i].name.clone(),
                operator: self.logs[i].operator.clone(),
                error: LogError::DeadlinePassed,
            });
        }
        SubmitError::DeadlinePassed {
            deadline: self.policy.deadline,
            verified: self.scts.len(),
            failures: self.failures,
        }
    }
}

/// Submits a precertificate to `logs` until `policy` holds and returns the verified SCTs to
/// embed (at least `min_scts`, from at least `min_operators` operators).
pub async fn submit_precert(
    client: &reqwest::Client,
    logs: &[CtLog],
    precert_der: &[u8],
    issuer_der: &[u8],
    policy: &SubmitPolicy,
) -> Result<Vec<EmbeddedSct>, SubmitError> {
    let operators: HashSet<&str> = logs.iter().map(|l| l.operator.as_str()).collect();
    if logs.len() < policy.min_scts || operators.len() < policy.min_operators {
        return Err(SubmitError::NotEnoughLogs {
            logs: logs.len(),
            operators: operators.len(),
            min_scts: policy.min_scts,
            min_operators: policy.min_operators,
        });
    }
    if !ct::is_precertificate(precert_der)? {
        return Err(CtError::ExtensionNotFound(ct::POISON_OID.to_owned()).into());
    }
    let entry = Entry::Precert {
        tbs: ct::tbs_without_extension(precert_der, ct::POISON_OID)?,
        issuer_key_hash: ct::issuer_key_hash(issuer_der)?,
    };
    let body = chain_body(precert_der, issuer_der);
    let launch = |index: usize| {
        let (entry, body) = (&entry, &body);
        async move {
            let result = submit_to_log(
                client,
                &logs[index],
                entry,
                body,
                policy.per_request_timeout,
            )
            .await;
            (index, result)
        }
    };

    let mut hedge = Hedge {
        logs,
        policy,
        pending: interleave_by_operator(logs),
        in_flight: Vec::new(),
        scts: Vec::new(),
        failures: Vec::new(),
    };
    let deadline = tokio::time::sleep(policy.deadline);
    tokio::pin!(deadline);
    // interval() panics on a zero period; a zero stagger means "hedge as fast as possible".
    let period = policy.stagger.max(Duration::from_millis(1));
    let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);

    let mut in_flight = FuturesUnordered::new();
    in_flight.extend(hedge.top_up().into_iter().map(launch));
    loop {
        if hedge.satisfied() {
            return Ok(hedge.scts);
        }
        let can_hedge = hedge.peek_next().is_some();
        if in_flight.is_empty() && !can_hedge {
            return Err(SubmitError::LogsExhausted {
                verified: hedge.scts.len(),
                failures: hedge.failures,
            });
        }
        tokio::select! {
            Some((index, result)) = in_flight.next(), if !in_flight.is_empty() => {
                hedge.finish(index, result);
                in_flight.extend(hedge.top_up().into_iter().map(launch));
            }
            _ = ticker.tick(), if can_hedge => {
                in_flight.extend(hedge.take_next().map(launch));
            }
            () = &mut deadline => return Err(hedge.deadline_error()),
        }
    }
}

fn chain_body(cert_der: &[u8], issuer_der: &[u8]) -> Vec<u8> {
    let request = AddChainRequest::from_der_chain(&[cert_der, issuer_der]);
    // Serializing a struct of strings cannot fail.
    serde_json::to_vec(&request).unwrap_or_default()
}

/// The outcome of logging a final certificate with one log.
#[derive(Debug)]
pub struct FinalSubmission {
    pub log_name: String,
    pub operator: String,
    pub result: Result<Sct, LogError>,
}

/// Logs a final certificate with every log in `logs` at once, best effort: results come back
/// in `logs` order, and logs still pending at `policy.deadline` report
/// [`LogError::DeadlinePassed`].
pub async fn submit_final(
    client: &reqwest::Client,
    logs: &[CtLog],
    cert_der: &[u8],
    issuer_der: &[u8],
    policy: &SubmitPolicy,
) -> Result<Vec<FinalSubmission>, SubmitError> {
    if ct::is_precertificate(cert_der)? {
        return Err(SubmitError::PrecertificateGiven);
    }
    let entry = Entry::X509 { cert: cert_der };
    let body = chain_body(cert_der, issuer_der);
    let mut results: Vec<Option<Result<Sct, LogError>>> = logs.iter().map(|_| None).collect();
    let mut in_flight: FuturesUnordered<_> = logs
        .iter()
        .enumerate()
        .map(|(index, log)| {
            let (entry, body) = (&entry, &body);
            async move {
                let result =
                    submit_to_log(client, log, entry, body, policy.per_request_timeout).await;
                (index, result)
            }
        })
        .collect();
    let deadline = tokio::time::sleep(policy.deadline);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = in_flight.next() => match next {
                Some((index, result)) => {
                    if let Err(error) = &result {
                        tracing::info!(log = %logs[index].name, %error, "final certificate not logged");
                    }
                    results[index] = Some(result);
                }
                None => break,
            },
            () = &mut deadline => break,
        }
    }
    Ok(logs
        .iter()
        .zip(results)
        .map(|(log, result)| FinalSubmission {
            log_name: log.name.clone(),
            operator: log.operator.clone(),
            result: result.unwrap_or(Err(LogError::DeadlinePassed)),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(name: &str, operator: &str) -> CtLog {
        CtLog {
            name: name.into(),
            url: String::new(),
            public_key_der: Vec::new(),
            operator: operator.into(),
        }
    }

    #[test]
    fn interleaving_spreads_operators() {
        let logs = [
            log("a1", "A"),
            log("a2", "A"),
            log("a3", "A"),
            log("b1", "B"),
            log("c1", "C"),
        ];
        assert_eq!(interleave_by_operator(&logs), [0, 3, 4, 1, 2]);
        assert!(interleave_by_operator(&[]).is_empty());
    }

    #[test]
    fn hedge_prefers_new_operators_and_stops_when_nothing_can_help() {
        let logs = [log("a1", "A"), log("a2", "A"), log("b1", "B")];
        let policy = SubmitPolicy::default();
        let mut hedge = Hedge {
            logs: &logs,
            policy: &policy,
            pending: interleave_by_operator(&logs),
            in_flight: Vec::new(),
            scts: Vec::new(),
            failures: Vec::new(),
        };
        assert_eq!(hedge.top_up(), [0, 2]);
        let sct = Sct {
            version: 0,
            log_id: [0; 32],
            timestamp: 0,
            extensions: Vec::new(),
            hash_alg: 4,
            sig_alg: 3,
            signature: Vec::new(),
        };
        hedge.finish(0, Ok(sct.clone()));
        // One SCT from A, B in flight: a2 would only be a hedge, so nothing is started now.
        assert!(hedge.top_up().is_empty());
        hedge.finish(2, Err(LogError::Timeout));
        assert_eq!(hedge.top_up(), [1]);
        hedge.finish(1, Ok(sct));
        // Two SCTs, both from A: no pending log can add an operator.
        assert!(!hedge.satisfied());
        assert_eq!(hedge.peek_next(), None);
    }
}
