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
        service::run_worker(wiring, proto::queues::SIGNER, handler).await
    })
}
