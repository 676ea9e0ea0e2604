//! `signer`: signs precertificates and final certificates. The only binary
//! that reads the CA's private keys.

use signer::config::SignerConfig;
use std::process::ExitCode;

fn main() -> ExitCode {
    service::main("signer", async |common, config: SignerConfig| {
        let ca = config.load_ca()?;
        let wiring = service::Wiring::connect(common, "signer").await?;
        let handler = config.signer(ca, &wiring.common, wiring.store.clone());
        handler.record_issuer().await?;
        // Only the signer holds the key, so only it signs CRLs: one leader
        // among the replicas, beside the stage.
        tokio::spawn(signer::crls::CrlUpdater::of(&handler).run(wiring.shutdown.clone()));
        service::run_worker(wiring, proto::queues::SIGNER, handler).await
    })
}
