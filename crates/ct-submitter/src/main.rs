//! `ct-submitter`: obtains and verifies SCTs from the configured CT logs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ct_submitter::{CtLog, CtSubmitter, LogKind, SubmitPolicy};
use serde::Deserialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The issuing intermediate (PEM), sent to logs after each precertificate.
    issuer_cert: PathBuf,
    logs: Vec<LogConfig>,
    #[serde(default = "default_min_scts")]
    min_scts: usize,
    /// SCTs needed when the certificate's lifetime exceeds `long_lifetime_days`.
    #[serde(default = "default_min_scts_long")]
    min_scts_long: usize,
    #[serde(default = "default_long_lifetime_days")]
    long_lifetime_days: u64,
    #[serde(default = "default_min_operators")]
    min_operators: usize,
    /// SCTs that must come from RFC 6962 (not static-ct) logs.
    #[serde(default = "default_min_rfc6962")]
    min_rfc6962: usize,
    #[serde(default = "default_stagger_ms")]
    stagger_ms: u64,
    #[serde(default = "default_deadline_secs")]
    deadline_secs: u64,
    #[serde(default = "default_request_timeout_secs")]
    request_timeout_secs: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogConfig {
    name: String,
    url: String,
    /// The log's public key: base64 of its SubjectPublicKeyInfo DER.
    public_key: String,
    operator: String,
    /// `rfc6962` (the default) or `static-ct`.
    #[serde(default)]
    kind: Option<String>,
    /// Temporal shard: the log takes certificates whose notAfter is at or
    /// after this RFC 3339 time ("2026-01-01T00:00:00Z")...
    #[serde(default)]
    not_after_start: Option<String>,
    /// ...and before this one. Either may be left out.
    #[serde(default)]
    not_after_end: Option<String>,
}

/// An RFC 3339 time in a log's config, as unix seconds.
fn unix_time(log: &str, key: &str, value: Option<&str>) -> anyhow::Result<Option<i64>> {
    value
        .map(|v| {
            time::OffsetDateTime::parse(v.trim(), &time::format_description::well_known::Rfc3339)
                .map(|t| t.unix_timestamp())
                .map_err(|e| anyhow::anyhow!("[ct-submitter] log {log}: {key} {v:?}: {e}"))
        })
        .transpose()
}

fn default_min_scts() -> usize {
    2
}
fn default_min_operators() -> usize {
    2
}
fn default_min_scts_long() -> usize {
    3
}
fn default_long_lifetime_days() -> u64 {
    180
}
fn default_min_rfc6962() -> usize {
    1
}
fn default_stagger_ms() -> u64 {
    200
}
fn default_deadline_secs() -> u64 {
    20
}
fn default_request_timeout_secs() -> u64 {
    10
}

fn main() -> ExitCode {
    service::main("ct-submitter", run)
}

async fn run(common: service::Common, config: Config) -> anyhow::Result<()> {
    let issuer_pem = std::fs::read(&config.issuer_cert)?;
    let issuer_der = openssl::x509::X509::from_pem(&issuer_pem)?.to_der()?;
    let logs = config
        .logs
        .into_iter()
        .map(|log| {
            let kind = match log.kind.as_deref() {
                None => LogKind::Rfc6962,
                Some(k) => LogKind::parse(k).ok_or_else(|| {
                    anyhow::anyhow!(
                        "[ct-submitter] log {}: kind {k:?} is neither \"rfc6962\" nor \"static-ct\"",
                        log.name
                    )
                })?,
            };
            let not_after_start =
                unix_time(&log.name, "not_after_start", log.not_after_start.as_deref())?;
            let not_after_end =
                unix_time(&log.name, "not_after_end", log.not_after_end.as_deref())?;
            if let (Some(start), Some(end)) = (not_after_start, not_after_end)
                && start >= end
            {
                anyhow::bail!(
                    "[ct-submitter] log {}: not_after_start is not before not_after_end",
                    log.name
                );
            }
            let public_key_der = STANDARD.decode(log.public_key.trim()).map_err(|e| {
                anyhow::anyhow!("[ct-submitter] log {}: public_key: {e}", log.name)
            })?;
            Ok(CtLog {
                kind,
                not_after_start,
                not_after_end,
                ..CtLog::new(log.name, log.url, public_key_der, log.operator)
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let policy = SubmitPolicy {
        min_scts: config.min_scts,
        min_scts_long: config.min_scts_long,
        long_lifetime: Duration::from_secs(config.long_lifetime_days * 24 * 3600),
        min_operators: config.min_operators,
        min_rfc6962: config.min_rfc6962,
        stagger: Duration::from_millis(config.stagger_ms),
        deadline: Duration::from_secs(config.deadline_secs),
        per_request_timeout: Duration::from_secs(config.request_timeout_secs),
    };
    // Retries last until each order's finalize deadline (the handler ends the
    // order then), not until a fixed number of attempts.
    let mut common = common;
    let adapted = ct_submitter::runner_config(common.runner.runner_config());
    common.runner.max_attempts = adapted.max_attempts;
    common.runner.backoff_max_ms =
        u64::try_from(adapted.backoff_max.as_millis()).unwrap_or(u64::MAX);
    let step_timeout = common.runner.step_timeout();
    let wiring = service::Wiring::connect(common, "ct-submitter").await?;
    let handler = CtSubmitter {
        store: wiring.store.clone(),
        client: reqwest::Client::builder().build()?,
        logs,
        policy,
        issuer_der,
        step_timeout,
    };
    service::run_worker(wiring, proto::queues::CT_SUBMITTER, handler).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_bounds_are_rfc3339() {
        assert_eq!(unix_time("l", "k", None).unwrap(), None);
        assert_eq!(
            unix_time("l", "k", Some("2026-01-01T00:00:00Z")).unwrap(),
            Some(1_767_225_600)
        );
        let err = unix_time("l", "not_after_end", Some("2026-01-01")).unwrap_err();
        assert!(err.to_string().contains("log l: not_after_end"), "{err}");
    }
}
