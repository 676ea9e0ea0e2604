//! `api`: the ACME front end. Any replica serves any request; one of them
//! at a time also runs the sweeper. A single replica may run as the sole
//! one (`[api] sole_replica`), which the others are then kept out of.

use api::config::CheckedApiSection;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    // Loading the section also builds the identifier policy and the
    // weak-key lists, so `--check-config` checks them too.
    service::main("api", async |common, section: CheckedApiSection| {
        let mut api_config = section.api_config(&common)?;
        let step_timeout = common.runner.step_timeout();
        let wiring = service::Wiring::connect(common, "api").await?;
        let role = api::replica_role::claim(&wiring.store, section.sole_replica).await?;
        api_config.sole_replica = section.sole_replica;
        let holding = tokio::spawn(api::replica_role::hold(
            role,
            wiring.store.clone(),
            wiring.shutdown.clone(),
        ));
        let compat_page = api::compat::admin_router(
            wiring.store.clone(),
            api_config.finalize.clone(),
            api_config.compat_abandon_after,
        );
        let admin = wiring.spawn_admin(wiring.base_checks(), compat_page);
        if let Some(path) = &section.finalize_schedule {
            api::finalize_policy::reload_on_sighup(path.clone(), api_config.finalize.clone());
        }
        let sweeper = sweeper::Sweeper {
            store: wiring.store.clone(),
            queue: wiring.queue.clone(),
            step_timeout,
        };
        let sweeping = tokio::spawn(sweeper.run(section.sweep_interval(), wiring.shutdown.clone()));

        let public = api::public_http::spawn(
            section.public_http_listen,
            wiring.store.clone(),
            wiring.shutdown.clone(),
        )
        .await?;
        let router = api::router(wiring.store.clone(), wiring.queue.clone(), api_config).await?;
        let handle = axum_server::Handle::new();
        let stop = handle.clone();
        let shutdown = wiring.shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            // Finish requests in flight, then stop.
            stop.graceful_shutdown(Some(Duration::from_secs(10)));
        });
        section.serve(router, handle).await?;
        wiring.close([sweeping, admin, holding, public]).await;
        Ok(())
    })
}
