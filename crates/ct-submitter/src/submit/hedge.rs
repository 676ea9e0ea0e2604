//! The hedged precertificate submission: as many logs as SCTs are still needed, preferring
//! operators (and RFC 6962 logs) not yet covered, one more on every stagger tick, a failed one
//! replaced at once, until the policy holds or the deadline passes.

use std::collections::HashSet;
use std::time::Duration;

use ct::{CtError, Sct};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::{Instant, MissedTickBehavior};

use super::http::{Entry, chain_body, submit_to_log};
use super::{CtLog, LogError, LogFailure, LogKind, Requirement, SubmitError, SubmitPolicy};
use super::{select_logs, validity};

/// A verified SCT and the log it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedSct {
    pub log_name: String,
    pub operator: String,
    pub sct: Sct,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::submit::test_util::*;

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
