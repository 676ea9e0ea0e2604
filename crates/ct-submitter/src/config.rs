//! `[ct-submitter]`: the ct-submitter binary's own config section, checked
//! into the logs and the policy the stage runs with.
//!
//! Serde checks the keys (`--check-config`); what only a start can tell —
//! that a log's kind, key and notAfter bounds make sense — is checked by
//! [`CtSubmitterConfig::logs`], naming the log.

use crate::{CtLog, LogKind, SubmitPolicy};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use std::time::Duration;

const DAY_SECS: u64 = 24 * 3600;

/// Every policy setting defaults to [`SubmitPolicy::default`].
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CtSubmitterConfig {
    pub logs: Vec<LogConfig>,
    #[serde(default = "default_min_scts")]
    pub min_scts: usize,
    /// SCTs needed when the certificate's lifetime exceeds `long_lifetime_days`.
    #[serde(default = "default_min_scts_long")]
    pub min_scts_long: usize,
    #[serde(default = "default_long_lifetime_days")]
    pub long_lifetime_days: u64,
    #[serde(default = "default_min_operators")]
    pub min_operators: usize,
    /// SCTs that must come from RFC 6962 (not static-ct) logs.
    #[serde(default = "default_min_rfc6962")]
    pub min_rfc6962: usize,
    #[serde(default = "default_stagger_ms")]
    pub stagger_ms: u64,
    #[serde(default = "default_deadline_secs")]
    pub deadline_secs: u64,
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
}

/// One `[[ct-submitter.logs]]` entry.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub name: String,
    pub url: String,
    /// The log's public key: base64 of its SubjectPublicKeyInfo DER.
    pub public_key: String,
    pub operator: String,
    /// `rfc6962` (the default) or `static-ct`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Temporal shard: the log takes certificates whose notAfter is at or
    /// after this RFC 3339 time ("2026-01-01T00:00:00Z")...
    #[serde(default)]
    pub not_after_start: Option<String>,
    /// ...and before this one. Either may be left out.
    #[serde(default)]
    pub not_after_end: Option<String>,
}

/// A log entry that parses but cannot be used. Each message is whole (the
/// cause is part of it, not a `source`), as the binary logs it.
#[derive(Debug, thiserror::Error)]
pub enum LogConfigError {
    #[error("[ct-submitter] log {log}: kind {kind:?} is neither \"rfc6962\" nor \"static-ct\"")]
    Kind { log: String, kind: String },
    #[error("[ct-submitter] log {log}: {key} {value:?}: {reason}")]
    Time {
        log: String,
        key: &'static str,
        value: String,
        reason: time::error::Parse,
    },
    #[error("[ct-submitter] log {log}: not_after_start is not before not_after_end")]
    EmptyShard { log: String },
    #[error("[ct-submitter] log {log}: public_key: {reason}")]
    PublicKey {
        log: String,
        reason: base64::DecodeError,
    },
}

fn default_min_scts() -> usize {
    SubmitPolicy::default().min_scts
}
fn default_min_scts_long() -> usize {
    SubmitPolicy::default().min_scts_long
}
fn default_long_lifetime_days() -> u64 {
    SubmitPolicy::default().long_lifetime.as_secs() / DAY_SECS
}
fn default_min_operators() -> usize {
    SubmitPolicy::default().min_operators
}
fn default_min_rfc6962() -> usize {
    SubmitPolicy::default().min_rfc6962
}
fn default_stagger_ms() -> u64 {
    millis(SubmitPolicy::default().stagger)
}
fn default_deadline_secs() -> u64 {
    SubmitPolicy::default().deadline.as_secs()
}
fn default_request_timeout_secs() -> u64 {
    SubmitPolicy::default().per_request_timeout.as_secs()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl CtSubmitterConfig {
    pub fn policy(&self) -> SubmitPolicy {
        SubmitPolicy {
            min_scts: self.min_scts,
            min_scts_long: self.min_scts_long,
            long_lifetime: Duration::from_secs(self.long_lifetime_days * DAY_SECS),
            min_operators: self.min_operators,
            min_rfc6962: self.min_rfc6962,
            stagger: Duration::from_millis(self.stagger_ms),
            deadline: Duration::from_secs(self.deadline_secs),
            per_request_timeout: Duration::from_secs(self.request_timeout_secs),
        }
    }

    /// The configured logs, in configuration order.
    pub fn logs(&self) -> Result<Vec<CtLog>, LogConfigError> {
        self.logs.iter().map(LogConfig::log).collect()
    }
}

impl LogConfig {
    fn log(&self) -> Result<CtLog, LogConfigError> {
        let kind = match self.kind.as_deref() {
            None => LogKind::Rfc6962,
            Some(k) => LogKind::parse(k).ok_or_else(|| LogConfigError::Kind {
                log: self.name.clone(),
                kind: k.to_string(),
            })?,
        };
        let not_after_start = self.unix_time("not_after_start", &self.not_after_start)?;
        let not_after_end = self.unix_time("not_after_end", &self.not_after_end)?;
        if let (Some(start), Some(end)) = (not_after_start, not_after_end)
            && start >= end
        {
            return Err(LogConfigError::EmptyShard {
                log: self.name.clone(),
            });
        }
        let public_key_der = STANDARD.decode(self.public_key.trim()).map_err(|reason| {
            LogConfigError::PublicKey {
                log: self.name.clone(),
                reason,
            }
        })?;
        Ok(CtLog {
            kind,
            not_after_start,
            not_after_end,
            ..CtLog::new(&self.name, &self.url, public_key_der, &self.operator)
        })
    }

    /// An RFC 3339 time of this log's config, as unix seconds.
    fn unix_time(
        &self,
        key: &'static str,
        value: &Option<String>,
    ) -> Result<Option<i64>, LogConfigError> {
        value
            .as_deref()
            .map(|v| {
                time::OffsetDateTime::parse(
                    v.trim(),
                    &time::format_description::well_known::Rfc3339,
                )
                .map(|t| t.unix_timestamp())
                .map_err(|reason| LogConfigError::Time {
                    log: self.name.clone(),
                    key,
                    value: v.to_string(),
                    reason,
                })
            })
            .transpose()
    }
}

/// [`crate::runner_config`] applied to the `[runner]` section, before the
/// broker connection takes its prefetch from it: retries last until each
/// order's finalize deadline, not a fixed number of attempts.
pub fn adapt_runner(runner: &mut service::config::Runner) {
    let adapted = crate::runner_config(runner.runner_config());
    runner.max_attempts = adapted.max_attempts;
    runner.backoff_max_ms = millis(adapted.backoff_max);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn load(own: &str) -> Result<CtSubmitterConfig, service::ConfigError> {
        let file = tempfile::NamedTempFile::new().unwrap();
        let text = format!(
            "[database]\nurl = \"sqlite://x\"\n[acme]\nbase_url = \"https://a\"\n\
             [ct-submitter]\n{own}"
        );
        std::fs::write(file.path(), text).unwrap();
        service::config::load(Some(file.path()), "ct-submitter").map(|(_, own)| own)
    }

    /// A log entry (`[[ct-submitter.logs]]`) with `extra` lines.
    fn log_entry(name: &str, extra: &str) -> String {
        format!(
            "[[ct-submitter.logs]]\nname = \"{name}\"\nurl = \"http://127.0.0.1:1\"\n\
             public_key = \"AAEC\"\noperator = \"Op\"\n{extra}"
        )
    }

    #[test]
    fn policy_defaults_are_the_submit_policy_defaults() {
        let config = load("logs = []\n").unwrap();
        assert_eq!(config.policy(), SubmitPolicy::default());
        // What the deployments have run with.
        assert_eq!(
            (config.deadline_secs, config.request_timeout_secs),
            (20, 10)
        );
        assert_eq!((config.stagger_ms, config.long_lifetime_days), (200, 180));
    }

    #[test]
    fn every_policy_key_is_read() {
        let config = load(
            "logs = []\nmin_scts = 3\nmin_scts_long = 4\nlong_lifetime_days = 100\n\
             min_operators = 3\nmin_rfc6962 = 2\nstagger_ms = 50\ndeadline_secs = 7\n\
             request_timeout_secs = 3\n",
        )
        .unwrap();
        assert_eq!(
            config.policy(),
            SubmitPolicy {
                min_scts: 3,
                min_scts_long: 4,
                long_lifetime: Duration::from_secs(100 * DAY_SECS),
                min_operators: 3,
                min_rfc6962: 2,
                stagger: Duration::from_millis(50),
                deadline: Duration::from_secs(7),
                per_request_timeout: Duration::from_secs(3),
            }
        );
    }

    #[test]
    fn unknown_keys_are_refused_in_the_section_and_in_a_log() {
        let err = load("logs = []\ndeadline = 3\n").unwrap_err().to_string();
        assert!(err.contains("deadline"), "{err}");
        let err = load(&log_entry("a", "key = \"x\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("key"), "{err}");
    }

    #[test]
    fn logs_are_built_with_kind_and_shard_bounds() {
        let config = load(&format!(
            "{}{}",
            log_entry("a", ""),
            log_entry(
                "b",
                "kind = \"static-ct\"\nnot_after_start = \"2026-01-01T00:00:00Z\"\n"
            )
        ))
        .unwrap();
        let logs = config.logs().unwrap();
        assert_eq!(
            logs[0],
            CtLog::new("a", "http://127.0.0.1:1", vec![0, 1, 2], "Op")
        );
        assert_eq!(logs[1].kind, LogKind::StaticCt);
        assert_eq!(logs[1].not_after_start, Some(1_767_225_600));
        assert_eq!(logs[1].not_after_end, None);
    }

    /// Each mistake only a start can see names the log and the key.
    #[test]
    fn bad_logs_are_named() {
        for (extra, expected) in [
            ("kind = \"static\"\n", "log l: kind \"static\" is neither"),
            (
                "not_after_end = \"2026-01-01\"\n",
                "log l: not_after_end \"2026-01-01\"",
            ),
            (
                "not_after_start = \"2027-01-01T00:00:00Z\"\nnot_after_end = \"2026-01-01T00:00:00Z\"\n",
                "log l: not_after_start is not before not_after_end",
            ),
        ] {
            let config = load(&log_entry("l", extra)).unwrap();
            let err = config.logs().unwrap_err().to_string();
            assert!(err.starts_with("[ct-submitter] "), "{err}");
            assert!(err.contains(expected), "{err}");
        }
        let config = load(&log_entry("l", "")).unwrap();
        let bad_key = CtSubmitterConfig {
            logs: vec![LogConfig {
                public_key: "@CT_LOG_0_PUBLIC_KEY@".into(),
                ..config.logs[0].clone()
            }],
            ..config
        };
        let err = bad_key.logs().unwrap_err().to_string();
        assert!(err.contains("log l: public_key"), "{err}");
    }

    #[test]
    fn the_runner_retries_until_the_deadline() {
        let mut runner = service::config::Runner::default();
        adapt_runner(&mut runner);
        assert_eq!(runner.max_attempts, u32::MAX);
        assert_eq!(
            Duration::from_millis(runner.backoff_max_ms),
            crate::MAX_RETRY_DELAY
        );
        assert_eq!(
            runner.concurrency,
            service::config::Runner::default().concurrency
        );
    }

    /// The example parses (`--check-config`) though its keys are
    /// placeholders the compose init replaces; a start refuses them.
    #[test]
    fn the_deployment_example_loads_but_its_placeholder_keys_do_not() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config/ct-submitter.toml");
        let (_, config): (_, CtSubmitterConfig) =
            service::config::load(Some(&path), "ct-submitter").unwrap();
        let err = config.logs().unwrap_err().to_string();
        assert!(err.contains("log fake-log-0: public_key"), "{err}");
    }
}
