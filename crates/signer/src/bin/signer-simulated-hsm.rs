//! `signer-simulated-hsm`: a BENCHMARK signer, never for production. The
//! `signer` with the same config, whose every job first holds the replica's
//! one simulated HSM session for `--simulated-latency-ms`, as a remote HSM
//! would add (kiln-bench scenario 4, `bench/scenario4.sh`).

use signer::Signer;
use signer::ca::CaHierarchy;
use signer::config::SignerConfig;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug)]
struct Flags {
    /// Milliseconds each signing job holds the replica's one simulated HSM
    /// session before it signs; 0 signs as the plain `signer` does.
    #[arg(long)]
    simulated_latency_ms: u64,
}

fn main() -> ExitCode {
    service::main_with_flags(
        "signer",
        async |common, config: SignerConfig, flags: Flags| {
            let ca = CaHierarchy::load_or_create(&config.ca_dir)?;
            let wiring = service::Wiring::connect(common, "signer").await?;
            let handler = config.signer(ca, &wiring.common, wiring.store.clone());
            if flags.simulated_latency_ms == 0 {
                return service::run_worker(wiring, proto::queues::SIGNER, handler).await;
            }
            tracing::warn!(
                ms = flags.simulated_latency_ms,
                "benchmark knob: simulated signing latency is on"
            );
            let slowed = SimulatedHsm {
                inner: handler,
                latency: Duration::from_millis(flags.simulated_latency_ms),
                session: tokio::sync::Mutex::new(()),
            };
            service::run_worker(wiring, proto::queues::SIGNER, slowed).await
        },
    )
}

/// One HSM session per replica, each signing job holding it for `latency`.
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
