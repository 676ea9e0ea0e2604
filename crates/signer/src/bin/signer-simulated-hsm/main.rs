//! `signer-simulated-hsm`: a BENCHMARK signer, never for production. The
//! `signer` with the same config, whose every job first holds the replica's
//! one simulated HSM session for `--simulated-latency-ms`, as a remote HSM
//! would add (kiln-bench scenario 4, `bench/scenario4.sh`). The wrapper
//! handler is in `hsm.rs`, beside this binary and outside the library.

use signer::config::SignerConfig;
use std::process::ExitCode;
use std::time::Duration;

mod hsm;
use hsm::SimulatedHsm;

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
            let ca = config.load_ca()?;
            let wiring = service::Wiring::connect(common, "signer").await?;
            let handler = config.signer(ca, &wiring.common, wiring.store.clone());
            handler.record_issuer().await?;
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
