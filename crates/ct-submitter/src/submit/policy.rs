//! The CT policy: how many SCTs a certificate needs, from how many operators and RFC 6962
//! logs, and which configured logs may be asked for it.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use super::{CtLog, LogKind, SubmitError};

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
    /// The all-in-one's policy: the production defaults, except that one
    /// submission may take as long as the whole finalization. On a laptop
    /// a slow log is a knob a client author turned (the fake logs' latency),
    /// not an outage to route around; a timeout shorter than that latency
    /// would fail every submission and issue nothing.
    pub fn laptop(finalize_timeout: Duration) -> Self {
        Self {
            deadline: finalize_timeout,
            per_request_timeout: finalize_timeout,
            ..Self::default()
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::submit::test_util::*;

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
}
