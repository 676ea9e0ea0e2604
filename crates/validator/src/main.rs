//! `validator`: checks challenges (http-01, dns-01, tls-alpn-01) and CAA.

use dns::Dns;
use dns::caa::CaaPolicy;
use std::process::ExitCode;
use validator::Validator;
use validator::config::ValidatorConfig;

fn main() -> ExitCode {
    service::main("validator", async |common, config: ValidatorConfig| {
        let dns = Dns::new(config.dns_mode())?;
        if !config.allow_non_public.is_empty() {
            tracing::warn!(
                ranges = ?config.allow_non_public,
                "validation may connect to these non-public ranges ([validator] allow_non_public)"
            );
        }
        let caa_policy = CaaPolicy {
            issuer_domains: common.acme.caa_identities.clone(),
        };
        let account_url_prefix = common.acme.account_url_prefix();
        let wiring = service::Wiring::connect(common, "validator").await?;
        let handler = Validator {
            store: wiring.store.clone(),
            dns,
            ports: config.ports(),
            addresses: config.addresses(),
            caa_policy,
            account_url_prefix,
        };
        service::run_worker(wiring, proto::queues::VALIDATOR, handler).await
    })
}
