//! `validator`: checks challenges and CAA; with `[validator] perspective`,
//! a remote perspective that repeats the primary's checks (MPIC).

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
        let roles = validator::roles::Roles::of(&config, store::now_ms() / 1000)?;
        let wiring =
            service::Wiring::connect_declaring(common, "validator", roles.queues_to_declare())
                .await?;
        let handler = Validator {
            store: wiring.store.clone(),
            dns,
            ports: config.ports(),
            addresses: config.addresses(),
            caa_policy,
            account_url_prefix,
            corroboration: match roles.perspective {
                Some(_) => None,
                None => config
                    .mpic
                    .corroboration(&wiring.queue, store::now_ms() / 1000)
                    .map_err(anyhow::Error::msg)?,
            },
            perspective: roles.perspective.clone(),
        };
        service::run_worker(wiring, roles.consumed_queue(), handler).await
    })
}
