//! `api`: the ACME front end. Any replica serves any request; one of them
//! at a time also runs the sweeper.

use api::{ApiConfig, FinalizeMode, FinalizePolicy, PolicyHandle};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The ACME port.
    listen: SocketAddr,
    /// HTTPS certificate chain and key (PEM). Without them the api speaks
    /// plain HTTP, for a TLS-terminating proxy in front.
    #[serde(default)]
    tls_chain: Option<PathBuf>,
    #[serde(default)]
    tls_key: Option<PathBuf>,
    /// Served at /roots/0.
    #[serde(default)]
    root_pem: Option<PathBuf>,
    /// The intermediate(s) served after each leaf.
    chain_pem: PathBuf,
    #[serde(default = "default_retry_after_secs")]
    retry_after_secs: u64,
    #[serde(default = "default_finalize_timeout_secs")]
    finalize_timeout_secs: u64,
    #[serde(default = "default_sweep_interval_ms")]
    sweep_interval_ms: u64,
    /// async, sync or hybrid, when no schedule file is given.
    #[serde(default = "default_finalize_mode")]
    finalize_mode: String,
    /// A brownout schedule (TOML; see api::finalize_policy); reloaded on
    /// SIGHUP without dropping requests.
    #[serde(default)]
    finalize_schedule: Option<PathBuf>,
    /// A `processing` answer with no poll after this long counts as
    /// abandoned in the compatibility report.
    #[serde(default = "default_abandon_after_secs")]
    compat_abandon_after_secs: u64,
}

fn default_finalize_mode() -> String {
    "async".into()
}
fn default_abandon_after_secs() -> u64 {
    600
}

/// The finalize policy from the schedule file, or the fixed mode.
fn load_policy(config: &Config) -> anyhow::Result<FinalizePolicy> {
    match &config.finalize_schedule {
        Some(path) => FinalizePolicy::from_file(path).map_err(anyhow::Error::msg),
        None => {
            let mode: FinalizeMode = config
                .finalize_mode
                .parse()
                .map_err(|e| anyhow::anyhow!("[api] finalize_mode: {e}"))?;
            Ok(FinalizePolicy::fixed(mode))
        }
    }
}

fn default_retry_after_secs() -> u64 {
    1
}
fn default_finalize_timeout_secs() -> u64 {
    600
}
fn default_sweep_interval_ms() -> u64 {
    1000
}

fn main() -> ExitCode {
    service::main("api", run)
}

async fn run(common: service::Common, config: Config) -> anyhow::Result<()> {
    let mut api_config = ApiConfig::new(&common.acme.base_url);
    api_config.caa_identities = common.acme.caa_identities.clone();
    api_config.step_timeout = common.runner.step_timeout();
    api_config.retry_after = Duration::from_secs(config.retry_after_secs);
    api_config.finalize_timeout = Duration::from_secs(config.finalize_timeout_secs);
    api_config.chain_pem = Some(std::fs::read_to_string(&config.chain_pem)?);
    if let Some(root) = &config.root_pem {
        api_config.root_pem = Some(std::fs::read_to_string(root)?);
    }
    api_config.finalize = PolicyHandle::new(load_policy(&config)?);
    api_config.compat_abandon_after = Duration::from_secs(config.compat_abandon_after_secs);
    let step_timeout = common.runner.step_timeout();
    let wiring = service::Wiring::connect(common, "api").await?;
    let compat_page = api::compat::admin_router(
        wiring.store.clone(),
        api_config.finalize.clone(),
        api_config.compat_abandon_after,
    );
    let admin = wiring.spawn_admin(wiring.base_checks(), compat_page);
    if let Some(path) = &config.finalize_schedule {
        api::finalize_policy::reload_on_sighup(path.clone(), api_config.finalize.clone());
    }

    let sweeper = sweeper::Sweeper {
        store: wiring.store.clone(),
        queue: wiring.queue.clone(),
        step_timeout,
    };
    let sweeping = tokio::spawn(sweeper.run(
        Duration::from_millis(config.sweep_interval_ms),
        wiring.shutdown.clone(),
    ));

    let router = api::router(wiring.store.clone(), wiring.queue.clone(), api_config).await?;
    let handle = axum_server::Handle::new();
    let stop = handle.clone();
    let shutdown = wiring.shutdown.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        // Finish requests in flight, then stop.
        stop.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    let service = router.into_make_service();
    tracing::info!(listen = %config.listen, "ACME api listening");
    match (&config.tls_chain, &config.tls_key) {
        (Some(chain), Some(key)) => {
            let tls = axum_server::tls_openssl::OpenSSLConfig::from_pem_chain_file(chain, key)?;
            let acceptor = axum_server::tls_openssl::OpenSSLAcceptor::new(tls);
            axum_server::bind(config.listen)
                .acceptor(acceptor)
                .handle(handle)
                .serve(service)
                .await?;
        }
        (None, None) => {
            axum_server::bind(config.listen)
                .handle(handle)
                .serve(service)
                .await?
        }
        _ => anyhow::bail!("[api] tls_chain and tls_key go together"),
    }
    wiring.close([sweeping, admin]).await;
    Ok(())
}
