//! `ct-submitter`: obtains and verifies SCTs from the configured CT logs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ct_submitter::{CtLog, CtSubmitter, SubmitPolicy};
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
    #[serde(default = "default_min_operators")]
    min_operators: usize,
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
}

fn default_min_scts() -> usize {
    2
}
fn default_min_operators() -> usize {
    2
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

#[tokio::main]
async fn main() -> ExitCode {
    let (common, config) = match service::start::<Config>("ct-submitter") {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    service::init_logging();
    match run(common, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "ct-submitter failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(common: service::Common, config: Config) -> anyhow::Result<()> {
    let issuer_pem = std::fs::read(&config.issuer_cert)?;
    let issuer_der = openssl::x509::X509::from_pem(&issuer_pem)?.to_der()?;
    let logs = config
        .logs
        .into_iter()
        .map(|log| {
            Ok(CtLog {
                public_key_der: STANDARD.decode(log.public_key.trim()).map_err(|e| {
                    anyhow::anyhow!("[ct-submitter] log {}: public_key: {e}", log.name)
                })?,
                name: log.name,
                url: log.url,
                operator: log.operator,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let policy = SubmitPolicy {
        min_scts: config.min_scts,
        min_operators: config.min_operators,
        stagger: Duration::from_millis(config.stagger_ms),
        deadline: Duration::from_secs(config.deadline_secs),
        per_request_timeout: Duration::from_secs(config.request_timeout_secs),
    };
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
