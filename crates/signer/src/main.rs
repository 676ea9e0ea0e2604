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
    /// BENCHMARK KNOB, not for production: every signer job first waits this
    /// long, one job at a time per replica, as a remote HSM session would
    /// add (kiln-bench scenario 4). 0 (the default) disables it.
    #[serde(default)]
    simulated_latency_ms: u64,
}

fn default_prefix() -> u8 {
    1
}
fn default_validity_days() -> u64 {
    90
}

fn main() -> ExitCode {
    service::main("signer", run)
}

async fn run(common: service::Common, config: Config) -> anyhow::Result<()> {
    let ca = CaHierarchy::load_or_create(&config.ca_dir)?;
    let base = common.acme.base_url.trim_end_matches('/').to_string();
    // AIA and CRL URLs are plain http (Baseline Requirements), on the api's host.
    let mut profile = Profile::for_base_url(&base);
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
    if config.simulated_latency_ms > 0 {
        tracing::warn!(
            ms = config.simulated_latency_ms,
            "benchmark knob: simulated signing latency is on"
        );
        let slowed = SimulatedHsm {
            inner: handler,
            latency: Duration::from_millis(config.simulated_latency_ms),
            session: tokio::sync::Mutex::new(()),
        };
        return service::run_worker(wiring, proto::queues::SIGNER, slowed).await;
    }
    service::run_worker(wiring, proto::queues::SIGNER, handler).await
}

/// Benchmark knob (`simulated_latency_ms`): one HSM session per replica,
/// each signing job holding it for the configured latency.
struct SimulatedHsm {
    inner: Signer,
    latency: Duration,
    session: tokio::sync::Mutex<()>,
}

#[async_trait::async_trait]
impl queue::Handler for SimulatedHsm {
    fn stage(&self) -> &'static str {
        self.inner.stage()
    }
    async fn handle(
        &self,
        job: &proto::Job,
        attempt: u32,
    ) -> Result<Vec<proto::Job>, queue::StageError> {
        {
            let _session = self.session.lock().await;
            tokio::time::sleep(self.latency).await;
        }
        self.inner.handle(job, attempt).await
    }
    async fn give_up(&self, job: &proto::Job, reason: &str) {
        self.inner.give_up(job, reason).await
    }
}
