//! `signer`: signs precertificates and final certificates. The only binary
//! that reads the CA's private keys.

use serde::Deserialize;
use signer::Signer;
use signer::ca::CaHierarchy;
use signer::certificate::Profile;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Holds root.pem, intermediate.pem and their keys (mode 0600).
    ca_dir: PathBuf,
    /// First serial byte, distinct per signer deployment (1..=127).
    #[serde(default = "default_prefix")]
    serial_prefix: u8,
    #[serde(default = "default_validity_days")]
    validity_days: u64,
}

fn default_prefix() -> u8 {
    1
}
fn default_validity_days() -> u64 {
    90
}

#[tokio::main]
async fn main() -> ExitCode {
    let (common, config) = match service::start::<Config>("signer") {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    service::init_logging();
    match run(common, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "signer failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(common: service::Common, config: Config) -> anyhow::Result<()> {
    let ca = CaHierarchy::load_or_create(&config.ca_dir)?;
    let base = common.acme.base_url.trim_end_matches('/').to_string();
    let mut profile = Profile::new(
        format!("{base}/ca/intermediate.der"),
        format!("{base}/ca/crl"),
    );
    profile.validity = Duration::from_secs(config.validity_days * 24 * 3600);
    let step_timeout = common.runner.step_timeout();
    let wiring = service::Wiring::connect(common, "signer").await?;
    let handler = Signer {
        store: wiring.store.clone(),
        ca,
        profile,
        serial_prefix: config.serial_prefix,
        step_timeout,
    };
    service::run_worker(wiring, proto::queues::SIGNER, handler).await
}
