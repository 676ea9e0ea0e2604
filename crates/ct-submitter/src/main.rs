//! `ct-submitter`: obtains and verifies SCTs from the configured CT logs.

use ct_submitter::CtSubmitter;
use ct_submitter::config::{self, CtSubmitterConfig};
use std::process::ExitCode;

fn main() -> ExitCode {
    service::main(
        "ct-submitter",
        async |mut common, config: CtSubmitterConfig| {
            let logs = config.logs()?;
            config::adapt_runner(&mut common.runner);
            let step_timeout = common.runner.step_timeout();
            let wiring = service::Wiring::connect(common, "ct-submitter").await?;
            let handler = CtSubmitter {
                store: wiring.store.clone(),
                client: reqwest::Client::builder().build()?,
                logs,
                policy: config.policy(),
                step_timeout,
            };
            service::run_worker(wiring, proto::queues::CT_SUBMITTER, handler).await
        },
    )
}
