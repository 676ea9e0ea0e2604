//! `caa-checker`: rechecks CAA at finalize for stale authorizations.

use caa_checker::CaaChecker;
use dns::caa::CaaPolicy;
use dns::{Dns, DnsMode};
use serde::Deserialize;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    dns_server: Option<SocketAddr>,
    /// Authorizations validated longer ago than this are rechecked.
    #[serde(default = "default_recheck_after_secs")]
    recheck_after_secs: u64,
}

fn default_recheck_after_secs() -> u64 {
    7 * 3600
}

fn main() -> ExitCode {
    service::main("caa-checker", run)
}

async fn run(common: service::Common, config: Config) -> anyhow::Result<()> {
    let dns = Dns::new(config.dns_server.map_or(DnsMode::Loopback, DnsMode::Server))?;
    let policy = CaaPolicy {
        issuer_domains: common.acme.caa_identities.clone(),
    };
    let account_url_prefix = common.acme.account_url_prefix();
    let step_timeout = common.runner.step_timeout();
    let wiring = service::Wiring::connect(common, "caa-checker").await?;
    let handler = CaaChecker {
        store: wiring.store.clone(),
        dns,
        policy,
        recheck_after: Duration::from_secs(config.recheck_after_secs),
        step_timeout,
        account_url_prefix,
    };
    service::run_worker(wiring, proto::queues::CAA_CHECKER, handler).await
}
