//! Hedged submission of precertificates to CT logs, and best-effort logging of final
//! certificates.
//!
//! A precertificate needs SCTs from enough logs of enough distinct operators before the final
//! certificate can be issued, and logs are often slow or flaky. So submissions are hedged:
//! as many start at once as are still needed (two with the usual policy), preferring
//! operators not yet covered; another starts on every stagger tick and a failed one is
//! replaced at once; everything else is dropped as soon as the policy holds. An SCT counts
//! only after its signature verifies against the configured key of the log that sent it.
//!
//! The policy follows Chrome's: at least 2 SCTs (3 when the certificate's lifetime exceeds
//! 180 days) from at least 2 operators, at least one of them from an RFC 6962 log. Logs are
//! either RFC 6962 or static-ct-api logs; a log that is temporally sharded only takes
//! certificates whose notAfter falls in its interval, and the others are never asked.
//!
//! Static-ct-api logs keep RFC 6962's submission endpoints (`add-chain`, `add-pre-chain`), so
//! they are submitted to exactly like RFC 6962 logs; their SCT extensions (the leaf index) are
//! covered by the signature check as opaque bytes and not interpreted. What differs, the
//! tiled read path for monitors, is not something a CA uses. The kind matters to the policy.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use ct::{AddChainRequest, AddChainResponse, CtError, Sct};
use futures::stream::{FuturesUnordered, StreamExt};
use reqwest::header::CONTENT_TYPE;
use tokio::time::{Instant, MissedTickBehavior};

/// The API a log implements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LogKind {
    /// RFC 6962 (`/ct/v1/...` for submission and monitoring).
    #[default]
    Rfc6962,
    /// c2sp.org/static-ct-api: RFC 6962 submission, tiled monitoring.
    StaticCt,
}

impl LogKind {
    /// The configuration spelling: `rfc6962` or `static-ct`.
    pub fn parse(s: &str) -> Option<LogKind> {
        match s {
            "rfc6962" => Some(LogKind::Rfc6962),
            "static-ct" => Some(LogKind::StaticCt),
            _ => None,
        }
    }
}

impl fmt::Display for LogKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogKind::Rfc6962 => "rfc6962",
            LogKind::StaticCt => "static-ct",
        })
    }
}

/// A CT log as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtLog {
    pub name: String,
    /// Base URL, e.g. `https://ct.example/2025h1` or `http://127.0.0.1:1234`.
    pub url: String,
    /// The log's DER SubjectPublicKeyInfo.
    pub public_key_der: Vec<u8>,
    pub operator: String,
    pub kind: LogKind,
    /// Temporal sharding: the log accepts only certificates whose notAfter (unix seconds) is
    /// at or after this...
    pub not_after_start: Option<i64>,
    /// ...and strictly before this. `None`: unbounded on that side.
    pub not_after_end: Option<i64>,
}

impl CtLog {
    /// An RFC 6962 log without temporal sharding.
    pub fn new(
        name: impl Into<String>,
        url: impl Into<String>,
        public_key_der: Vec<u8>,
        operator: impl Into<String>,
    ) -> CtLog {
        CtLog {
            name: name.into(),
            url: url.into(),
            public_key_der,
            operator: operator.into(),
            kind: LogKind::Rfc6962,
            not_after_start: None,
            not_after_end: None,
        }
    }

    /// Whether this log takes a certificate expiring at `not_after` (unix seconds).
    pub fn accepts_not_after(&self, not_after: i64) -> bool {
        self.not_after_start.is_none_or(|start| not_after >= start)
            && self.not_after_end.is_none_or(|end| not_after < end)
    }
}

/// How many SCTs a certificate needs, and how patiently they are sought.
/// `Default` is the one place of each default: the ct-submitter's config
/// and the embedded Kiln take theirs from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmitPolicy {
    /// Verified SCTs needed for a certificate whose lifetime is at most `long_lifetime`.
    pub min_scts: usize,
    /// Verified SCTs needed when the lifetime exceeds `long_lifetime`.
    pub min_scts_long: usize,
    /// Lifetime (notAfter − notBefore) beyond which `min_scts_long` applies.
    pub long_lifetime: Duration,
    /// Distinct log operators those SCTs must come from.
    pub min_operators: usize,
    /// Of those SCTs, how many must come from RFC 6962 logs.
    pub min_rfc6962: usize,
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
            min_scts_long: 3,
            long_lifetime: Duration::from_secs(180 * 24 * 3600),
            min_operators: 2,
            min_rfc6962: 1,
            stagger: Duration::from_millis(200),
            deadline: Duration::from_secs(20),
            per_request_timeout: Duration::from_secs(10),
        }
    }
}

impl SubmitPolicy {
    /// What a certificate valid from `not_before` to `not_after` (unix seconds) needs.
    pub fn requirement(&self, not_before: i64, not_after: i64) -> Requirement {
        let lifetime = u64::try_from(not_after.saturating_sub(not_before)).unwrap_or(0);
        let scts = if lifetime > self.long_lifetime.as_secs() {
            self.min_scts_long
        } else {
            self.min_scts
        };
        Requirement {
            scts,
            operators: self.min_operators,
            rfc6962: self.min_rfc6962,
        }
    }
}

/// The SCTs one certificate needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub scts: usize,
    pub operators: usize,
    /// SCTs from RFC 6962 logs among them.
    pub rfc6962: usize,
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} SCTs from {} operators, {} from RFC 6962 logs",
            self.scts, self.operators, self.rfc6962
        )
    }
}

/// The logs that may be asked for one certificate, and what it needs from them.
#[derive(Debug, PartialEq, Eq)]
pub struct Selection {
    /// Indices into the configured logs, in configuration order.
    pub usable: Vec<usize>,
    pub requirement: Requirement,
}

/// Picks the logs whose temporal shard takes `not_after` and checks that they can satisfy
/// the policy at all. Pure: the unit of the CT policy.
pub fn select_logs(
    logs: &[CtLog],
    policy: &SubmitPolicy,
    not_before: i64,
    not_after: i64,
) -> Result<Selection, SubmitError> {
    let requirement = policy.requirement(not_before, not_after);
    let usable: Vec<usize> = (0..logs.len())
        .filter(|&i| logs[i].accepts_not_after(not_after))
        .collect();
    let operators: HashSet<&str> = usable.iter().map(|&i| logs[i].operator.as_str()).collect();
    let rfc6962 = usable
        .iter()
        .filter(|&&i| logs[i].kind == LogKind::Rfc6962)
        .count();
    if usable.len() < requirement.scts
        || operators.len() < requirement.operators
        || rfc6962 < requirement.rfc6962
    {
        return Err(SubmitError::NotEnoughLogs {
            requirement,
            logs: usable.len(),
            operators: operators.len(),
            rfc6962,
            sharded_out: logs.len() - usable.len(),
        });
    }
    Ok(Selection {
        usable,
        requirement,
    })
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
    /// The configuration can never satisfy the policy for this certificate: not worth
    /// retrying.
    #[error(
        "CT policy needs {requirement}, but only {logs} configured logs ({rfc6962} RFC 6962) \
         from {operators} operators take this certificate ({sharded_out} excluded by their \
         notAfter interval)"
    )]
    NotEnoughLogs {
        requirement: Requirement,
        logs: usize,
        operators: usize,
        rfc6962: usize,
        sharded_out: usize,
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
    #[error("cannot read the certificate's validity: {0}")]
    BadValidity(String),
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

/// `submit_to_log` in a client span, recording per log (a configured name,
/// so few series) `kiln_ct_submission_duration_seconds{log, entry}` and
/// `kiln_ct_submission_errors_total{log, entry, reason}` (every reason's
/// series at zero from the log's first submission on).
async fn submit_to_log(
    client: &reqwest::Client,
    log: &CtLog,
    entry: &Entry<'_>,
    body: &[u8],
    timeout: Duration,
) -> Result<Sct, LogError> {
    use tracing::Instrument;
    let kind = match entry {
        Entry::Precert { .. } => "precert",
        Entry::X509 { .. } => "final",
    };
    let span = tracing::info_span!(
        "ct submit",
        otel.name = %format_args!("POST {}", entry.path()),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        http.request.method = "POST",
        url.full = %format_args!("{}/{}", log.url.trim_end_matches('/'), entry.path()),
        kiln.ct.log = %log.name,
        kiln.ct.entry = kind,
    );
    let started = Instant::now();
    let result = submit_to_log_unmetered(client, log, entry, body, timeout)
        .instrument(span.clone())
        .await;
    let name = log.name.clone();
    metrics::histogram!("kiln_ct_submission_duration_seconds", "log" => name.clone(), "entry" => kind)
        .record(started.elapsed().as_secs_f64());
    let failed = result.as_ref().err().map(|error| match error {
        LogError::Timeout | LogError::DeadlinePassed => "timeout",
        LogError::Transport(_) => "transport",
        LogError::Status { .. } => "status",
        LogError::BadResponse(_) => "bad_response",
        LogError::BadSct(_) => "bad_sct",
    });
    if failed.is_some() {
        span.record("otel.status_code", "error");
    }
    for reason in ["timeout", "transport", "status", "bad_response", "bad_sct"] {
        metrics::counter!(
            "kiln_ct_submission_errors_total",
            "log" => name.clone(),
            "entry" => kind,
            "reason" => reason
        )
        .increment(u64::from(failed == Some(reason)));
    }
    result
}

/// One submission to one log, with the answer verified against that log's key.
async fn submit_to_log_unmetered(
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
    need: Requirement,
    pending: Vec<usize>,
    in_flight: Vec<usize>,
    scts: Vec<EmbeddedSct>,
    /// How many of `scts` came from RFC 6962 logs.
    rfc6962: usize,
    failures: Vec<LogFailure>,
}

impl<'a> Hedge<'a> {
    /// `usable` in the order to try them (see [`interleave_by_operator`]).
    fn new(logs: &'a [CtLog], need: Requirement, usable: &[usize]) -> Self {
        let pending = interleave_by_operator(logs)
            .into_iter()
            .filter(|i| usable.contains(i))
            .collect();
        Hedge {
            logs,
            need,
            pending,
            in_flight: Vec::new(),
            scts: Vec::new(),
            rfc6962: 0,
            failures: Vec::new(),
        }
    }

    fn covered(&self) -> HashSet<&str> {
        self.scts.iter().map(|s| s.operator.as_str()).collect()
    }

    fn satisfied(&self) -> bool {
        self.scts.len() >= self.need.scts
            && self.covered().len() >= self.need.operators
            && self.rfc6962 >= self.need.rfc6962
    }

    /// Lower bound of further SCTs needed.
    fn still_needed(&self) -> usize {
        let scts = self.need.scts.saturating_sub(self.scts.len());
        let operators = self.need.operators.saturating_sub(self.covered().len());
        let rfc6962 = self.need.rfc6962.saturating_sub(self.rfc6962);
        scts.max(operators).max(rfc6962)
    }

    /// Position in `pending` of the most useful log to try next, if any can still help.
    /// A log helps if it adds an operator not covered yet, an RFC 6962 SCT while those are
    /// short, or simply an SCT while SCTs are short. Among those, one that covers what no
    /// submission in flight covers yet wins; ties go to the earlier (interleaved) log.
    fn peek_next(&self) -> Option<usize> {
        let covered = self.covered();
        let busy: HashSet<&str> = self
            .in_flight
            .iter()
            .map(|&i| self.logs[i].operator.as_str())
            .collect();
        let rfc_in_flight = self
            .in_flight
            .iter()
            .filter(|&&i| self.logs[i].kind == LogKind::Rfc6962)
            .count();
        let rfc_short = self.rfc6962 < self.need.rfc6962;
        let rfc_uncovered = self.rfc6962 + rfc_in_flight < self.need.rfc6962;
        let scts_short = self.scts.len() < self.need.scts;
        let score = |i: usize| -> Option<u8> {
            let log = &self.logs[i];
            let new_operator = !covered.contains(log.operator.as_str());
            let adds_rfc = rfc_short && log.kind == LogKind::Rfc6962;
            if !(new_operator || adds_rfc || scts_short) {
                return None;
            }
            let operator_score = match (new_operator, busy.contains(log.operator.as_str())) {
                (true, false) => 4,
                (true, true) => 2,
                _ => 0,
            };
            let rfc_score = match (adds_rfc, rfc_uncovered) {
                (true, true) => 4,
                (true, false) => 1,
                _ => 0,
            };
            Some(operator_score + rfc_score)
        };
        let mut best: Option<(usize, u8)> = None;
        for (pos, &i) in self.pending.iter().enumerate() {
            if let Some(s) = score(i)
                && best.is_none_or(|(_, b)| s > b)
            {
                best = Some((pos, s));
            }
        }
        best.map(|(pos, _)| pos)
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
                // An SCT that counts toward the policy (embedded).
                metrics::counter!("kiln_ct_sct_wins_total", "log" => log.name.clone()).increment(1);
                if log.kind == LogKind::Rfc6962 {
                    self.rfc6962 += 1;
                }
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

    fn deadline_error(mut self, deadline: Duration) -> SubmitError {
        for &i in &self.in_flight {
            self.failures.push(LogFailure {
                log_name: self.logs[i].name.clone(),
                operator: self.logs[i].operator.clone(),
                error: LogError::DeadlinePassed,
            });
        }
        SubmitError::DeadlinePassed {
            deadline,
            verified: self.scts.len(),
            failures: self.failures,
        }
    }
}

/// `(notBefore, notAfter)` of a DER certificate, in unix seconds.
pub fn validity(cert_der: &[u8]) -> Result<(i64, i64), SubmitError> {
    let bad = |e: openssl::error::ErrorStack| SubmitError::BadValidity(e.to_string());
    let cert = openssl::x509::X509::from_der(cert_der).map_err(bad)?;
    let epoch = openssl::asn1::Asn1Time::from_unix(0).map_err(bad)?;
    let unix = |t: &openssl::asn1::Asn1TimeRef| -> Result<i64, SubmitError> {
        let d = epoch.diff(t).map_err(bad)?;
        Ok(i64::from(d.days) * 86_400 + i64::from(d.secs))
    };
    Ok((unix(cert.not_before())?, unix(cert.not_after())?))
}

/// Submits a precertificate to the usable `logs` until `policy` holds for it and returns the
/// verified SCTs to embed: as many as its lifetime requires, from enough operators, enough of
/// them from RFC 6962 logs. Logs whose notAfter interval excludes the certificate are never
/// asked.
pub async fn submit_precert(
    client: &reqwest::Client,
    logs: &[CtLog],
    precert_der: &[u8],
    issuer_der: &[u8],
    policy: &SubmitPolicy,
) -> Result<Vec<EmbeddedSct>, SubmitError> {
    if !ct::is_precertificate(precert_der)? {
        return Err(CtError::ExtensionNotFound(ct::POISON_OID.to_owned()).into());
    }
    let (not_before, not_after) = validity(precert_der)?;
    let selection = select_logs(logs, policy, not_before, not_after)?;
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

    let mut hedge = Hedge::new(logs, selection.requirement, &selection.usable);
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
            () = &mut deadline => return Err(hedge.deadline_error(policy.deadline)),
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

/// Logs a final certificate with every log in `logs` that takes its notAfter, all at once,
/// best effort: results come back in `logs` order (logs whose notAfter interval excludes the
/// certificate are left out), and logs still pending at `policy.deadline` report
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
    let (_, not_after) = validity(cert_der)?;
    let logs: Vec<&CtLog> = logs
        .iter()
        .filter(|log| log.accepts_not_after(not_after))
        .collect();
    let entry = Entry::X509 { cert: cert_der };
    let body = chain_body(cert_der, issuer_der);
    let mut results: Vec<Option<Result<Sct, LogError>>> = logs.iter().map(|_| None).collect();
    let mut in_flight: FuturesUnordered<_> = logs
        .iter()
        .enumerate()
        .map(|(index, &log)| {
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
        CtLog::new(name, "", Vec::new(), operator)
    }

    fn static_log(name: &str, operator: &str) -> CtLog {
        CtLog {
            kind: LogKind::StaticCt,
            ..log(name, operator)
        }
    }

    fn sct() -> Sct {
        Sct {
            version: 0,
            log_id: [0; 32],
            timestamp: 0,
            extensions: Vec::new(),
            hash_alg: 4,
            sig_alg: 3,
            signature: Vec::new(),
        }
    }

    const DAY: i64 = 86_400;
    const T0: i64 = 1_800_000_000;

    fn need(scts: usize, operators: usize, rfc6962: usize) -> Requirement {
        Requirement {
            scts,
            operators,
            rfc6962,
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
    fn three_scts_when_the_lifetime_exceeds_180_days() {
        let p = SubmitPolicy::default();
        assert_eq!(p.requirement(T0, T0 + 90 * DAY), need(2, 2, 1));
        assert_eq!(p.requirement(T0, T0 + 180 * DAY), need(2, 2, 1));
        assert_eq!(p.requirement(T0, T0 + 180 * DAY + 1), need(3, 2, 1));
        assert_eq!(p.requirement(T0, T0 + 398 * DAY), need(3, 2, 1));
        // Nonsense validity is not "long".
        assert_eq!(p.requirement(T0, T0 - DAY), need(2, 2, 1));
    }

    #[test]
    fn kinds_parse_from_config() {
        assert_eq!(LogKind::parse("rfc6962"), Some(LogKind::Rfc6962));
        assert_eq!(LogKind::parse("static-ct"), Some(LogKind::StaticCt));
        assert_eq!(LogKind::parse("static"), None);
        assert_eq!(LogKind::StaticCt.to_string(), "static-ct");
        assert_eq!(LogKind::default(), LogKind::Rfc6962);
    }

    #[test]
    fn temporal_shards_take_only_their_interval() {
        let shard = CtLog {
            not_after_start: Some(T0),
            not_after_end: Some(T0 + 180 * DAY),
            ..log("2027h1", "A")
        };
        assert!(!shard.accepts_not_after(T0 - 1));
        assert!(shard.accepts_not_after(T0), "start is inclusive");
        assert!(shard.accepts_not_after(T0 + 180 * DAY - 1));
        assert!(!shard.accepts_not_after(T0 + 180 * DAY), "end is exclusive");
        let open_end = CtLog {
            not_after_end: None,
            ..shard.clone()
        };
        assert!(open_end.accepts_not_after(i64::MAX));
        assert!(log("any", "A").accepts_not_after(i64::MIN));
    }

    #[test]
    fn selection_drops_other_shards_and_checks_the_policy() {
        let policy = SubmitPolicy::default();
        let shard = |name: &str, op: &str, start: i64| CtLog {
            not_after_start: Some(start),
            not_after_end: Some(start + 180 * DAY),
            ..log(name, op)
        };
        let h1 = T0;
        let h2 = T0 + 180 * DAY;
        let logs = [
            shard("a-h1", "A", h1),
            shard("a-h2", "A", h2),
            shard("b-h1", "B", h1),
            shard("b-h2", "B", h2),
            static_log("c", "C"),
        ];
        // Expiring in the first half: a-h1, b-h1 and the unsharded static log.
        let nb = h1 + 10 * DAY;
        let s = select_logs(&logs, &policy, nb, nb + 90 * DAY).unwrap();
        assert_eq!(s.usable, [0, 2, 4]);
        assert_eq!(s.requirement, need(2, 2, 1));
        // Expiring in the second half.
        let nb = h2 + 10 * DAY;
        let s = select_logs(&logs, &policy, nb, nb + 90 * DAY).unwrap();
        assert_eq!(s.usable, [1, 3, 4]);
        // A 200-day certificate expiring in the second half needs 3 SCTs: 3 logs will do.
        let s = select_logs(&logs, &policy, h2 - 100 * DAY, h2 + 100 * DAY).unwrap();
        assert_eq!(s.requirement, need(3, 2, 1));
        // Expiring after every shard: only the static log, which can never do.
        let late = h2 + 200 * DAY;
        let err = select_logs(&logs, &policy, late - 90 * DAY, late).unwrap_err();
        let SubmitError::NotEnoughLogs {
            logs: 1,
            operators: 1,
            rfc6962: 0,
            sharded_out: 4,
            ..
        } = err
        else {
            panic!("{err}");
        };
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("4 excluded"), "{err}");
    }

    #[test]
    fn selection_needs_an_rfc6962_log_and_enough_operators() {
        let policy = SubmitPolicy::default();
        let window = (T0, T0 + 90 * DAY);
        // Static-ct only: enough SCTs and operators, no RFC 6962 log.
        let all_static = [static_log("s1", "A"), static_log("s2", "B")];
        let err = select_logs(&all_static, &policy, window.0, window.1).unwrap_err();
        assert!(
            matches!(err, SubmitError::NotEnoughLogs { rfc6962: 0, .. }),
            "{err}"
        );
        // One operator only.
        let one_op = [log("a1", "A"), log("a2", "A"), static_log("a3", "A")];
        assert!(select_logs(&one_op, &policy, window.0, window.1).is_err());
        // Two logs cannot give the 3 SCTs a long-lived certificate needs.
        let two = [log("a", "A"), static_log("b", "B")];
        assert!(select_logs(&two, &policy, window.0, window.1).is_ok());
        assert!(select_logs(&two, &policy, T0, T0 + 200 * DAY).is_err());
    }

    #[test]
    fn hedge_prefers_new_operators_and_stops_when_nothing_can_help() {
        let logs = [log("a1", "A"), log("a2", "A"), log("b1", "B")];
        let mut hedge = Hedge::new(&logs, need(2, 2, 1), &[0, 1, 2]);
        assert_eq!(hedge.top_up(), [0, 2]);
        hedge.finish(0, Ok(sct()));
        // One SCT from A, B in flight: a2 would only be a hedge, so nothing is started now.
        assert!(hedge.top_up().is_empty());
        hedge.finish(2, Err(LogError::Timeout));
        assert_eq!(hedge.top_up(), [1]);
        hedge.finish(1, Ok(sct()));
        // Two SCTs, both from A: no pending log can add an operator.
        assert!(!hedge.satisfied());
        assert_eq!(hedge.peek_next(), None);
    }

    #[test]
    fn hedge_makes_sure_of_an_rfc6962_sct() {
        // Static logs come first in configuration order; the RFC 6962 one is still started
        // at once, since without it the policy cannot hold.
        let logs = [static_log("s1", "A"), static_log("s2", "B"), log("r1", "C")];
        let mut hedge = Hedge::new(&logs, need(2, 2, 1), &[0, 1, 2]);
        let first = hedge.top_up();
        assert_eq!(first.len(), 2);
        assert!(first.contains(&2), "RFC 6962 log started first: {first:?}");
        // Both static SCTs but no RFC 6962 one: not enough, whatever the count.
        let mut hedge = Hedge::new(&logs, need(2, 2, 1), &[0, 1, 2]);
        hedge.pending = vec![2];
        hedge.in_flight = vec![0, 1];
        hedge.finish(0, Ok(sct()));
        hedge.finish(1, Ok(sct()));
        assert!(!hedge.satisfied());
        assert_eq!(hedge.still_needed(), 1);
        assert_eq!(hedge.top_up(), [2]);
        hedge.finish(2, Ok(sct()));
        assert!(hedge.satisfied());
        assert_eq!(hedge.scts.len(), 3);
    }

    #[test]
    fn hedge_counts_three_for_long_lived_certificates() {
        let logs = [log("a", "A"), log("b", "B"), static_log("c", "C")];
        let mut hedge = Hedge::new(&logs, need(3, 2, 1), &[0, 1, 2]);
        assert_eq!(hedge.top_up().len(), 3, "three needed, three started");
        hedge.finish(0, Ok(sct()));
        hedge.finish(1, Ok(sct()));
        assert!(!hedge.satisfied(), "2 of 3");
        hedge.finish(2, Ok(sct()));
        assert!(hedge.satisfied());
    }

    #[test]
    fn hedge_never_asks_a_log_outside_the_selection() {
        let logs = [log("a", "A"), log("b", "B"), log("c", "C")];
        let mut hedge = Hedge::new(&logs, need(2, 2, 1), &[0, 2]);
        assert_eq!(hedge.top_up(), [0, 2]);
        hedge.finish(0, Err(LogError::Timeout));
        assert!(hedge.top_up().is_empty());
        assert_eq!(hedge.peek_next(), None);
    }
}
