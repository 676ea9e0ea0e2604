//! `caa-checker`: rechecks CAA at finalize for stale authorizations, with
//! `[caa-checker.mpic]`'s remote perspectives corroborating.

use caa_checker::CaaChecker;
use caa_checker::config::CheckedCaaCheckerConfig;
use dns::Dns;
use dns::caa::CaaPolicy;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Loading the config also parses the remotes and checks them against
    // the BRs' minimum, so `--check-config` checks them too.
    service::main(
        "caa-checker",
        async |common, own: CheckedCaaCheckerConfig| {
            let CheckedCaaCheckerConfig { config, remotes } = own;
            let dns = Dns::new(config.dns_mode())?;
            let policy = CaaPolicy {
                issuer_domains: common.acme.caa_identities.clone(),
            };
            let account_url_prefix = common.acme.account_url_prefix();
            let step_timeout = common.runner.step_timeout();
            let queues = remotes
                .iter()
                .map(|r| proto::queues::perspective(&r.name))
                .collect();
            let wiring = service::Wiring::connect_declaring(common, "caa-checker", queues).await?;
            let corroboration = config.mpic.corroboration(remotes, &wiring.queue);
            let handler = CaaChecker {
                corroboration,
                store: wiring.store.clone(),
                dns,
                policy,
                recheck_after: config.recheck_after(),
                step_timeout,
                account_url_prefix,
            };
            service::run_worker(wiring, proto::queues::CAA_CHECKER, handler).await
        },
    )
}
