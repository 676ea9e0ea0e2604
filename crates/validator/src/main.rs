//! `validator`: checks challenges (http-01, dns-01, tls-alpn-01) and CAA.

use dns::caa::CaaPolicy;
use dns::{Dns, DnsMode};
use serde::Deserialize;
use std::net::SocketAddr;
use std::process::ExitCode;
use validator::Validator;
use validator::challenge::ChallengePorts;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Where every lookup goes; without it, every name is 127.0.0.1 with no
    /// CAA (a laptop setting, never production).
    #[serde(default)]
    dns_server: Option<SocketAddr>,
    #[serde(default = "default_http01")]
    http01_port: u16,
    #[serde(default = "default_tlsalpn01")]
    tlsalpn01_port: u16,
}

fn default_http01() -> u16 {
    80
}
fn default_tlsalpn01() -> u16 {
    443
}

fn main() -> ExitCode {
    service::main("validator", run)
}

async fn run(common: service::Common, config: Config) -> anyhow::Result<()> {
    let dns = Dns::new(config.dns_server.map_or(DnsMode::Loopback, DnsMode::Server))?;
    let caa_policy = CaaPolicy {
        issuer_domains: common.acme.caa_identities.clone(),
    };
    let account_url_prefix = common.acme.account_url_prefix();
    let wiring = service::Wiring::connect(common, "validator").await?;
    let handler = Validator {
        store: wiring.store.clone(),
        dns,
        ports: ChallengePorts {
            http01: config.http01_port,
            tlsalpn01: config.tlsalpn01_port,
        },
        caa_policy,
        account_url_prefix,
    };
    service::run_worker(wiring, proto::queues::VALIDATOR, handler).await
}
