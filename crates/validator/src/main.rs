//! `validator`: checks challenges and CAA; with `[validator] perspective`,
//! a remote perspective that repeats the primary's checks (MPIC).

use dns::Dns;
use dns::caa::CaaPolicy;
use std::process::ExitCode;
use validator::Validator;
use validator::config::CheckedValidatorConfig;

fn main() -> ExitCode {
    // Loading the config also works out the roles (the remotes checked
    // against the BRs' minimum), so `--check-config` checks them too.
    service::main("validator", async |common, own: CheckedValidatorConfig| {
        let CheckedValidatorConfig { config, roles } = own;
        let dns = Dns::new(config.dns_mode())?;
        if !config.allow_non_public.is_empty() {
            tracing::warn!(
                ranges = ?config.allow_non_public,
                "validation may connect to these non-public ranges ([validator] allow_non_public)"
            );
        }
        if roles.uncorroborated() {
            tracing::warn!(
                "no remote perspectives: validation is not corroborated (a test deployment)"
            );
        }
        let caa_policy = CaaPolicy {
            issuer_domains: common.acme.caa_identities.clone(),
        };
        let account_url_prefix = common.acme.account_url_prefix();
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
            // A remote perspective has no remotes: it asks no one.
            corroboration: config
                .mpic
                .corroboration(roles.remotes.clone(), &wiring.queue),
            perspective: roles.perspective.clone(),
        };
        service::run_worker(wiring, roles.consumed_queue(), handler).await
    })
}
