//! `[api]`: the api binary's own config section, and serving the router on
//! its listener (HTTPS, or plain HTTP behind a TLS-terminating proxy).

use crate::{ApiConfig, FinalizeMode, FinalizePolicy, PolicyHandle};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// The ACME port.
    pub listen: SocketAddr,
    /// HTTPS certificate chain and key (PEM). Without them the api speaks
    /// plain HTTP, for a TLS-terminating proxy in front.
    #[serde(default)]
    pub tls_chain: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Served at /roots/0.
    #[serde(default)]
    pub root_pem: Option<PathBuf>,
    #[serde(default = "default_retry_after_secs")]
    pub retry_after_secs: u64,
    #[serde(default = "default_finalize_timeout_secs")]
    pub finalize_timeout_secs: u64,
    #[serde(default = "default_sweep_interval_ms")]
    pub sweep_interval_ms: u64,
    /// async, sync or hybrid, when no schedule file is given.
    #[serde(default = "default_finalize_mode")]
    pub finalize_mode: String,
    /// A brownout schedule (TOML; see api::finalize_policy); reloaded on
    /// SIGHUP without dropping requests.
    #[serde(default)]
    pub finalize_schedule: Option<PathBuf>,
    /// A `processing` answer with no poll after this long counts as
    /// abandoned in the compatibility report.
    #[serde(default = "default_abandon_after_secs")]
    pub compat_abandon_after_secs: u64,
    /// This replica is the only one on its database: used nonces and
    /// accounts are kept in memory, not read and written per request
    /// (see `api::replica_role`). Needs PostgreSQL; a second api replica of
    /// either kind then refuses to start.
    #[serde(default)]
    pub sole_replica: bool,
}

fn default_finalize_mode() -> String {
    "async".into()
}
fn default_abandon_after_secs() -> u64 {
    600
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

impl ApiSection {
    /// The finalize policy from the schedule file, or the fixed mode.
    pub fn finalize_policy(&self) -> anyhow::Result<FinalizePolicy> {
        match &self.finalize_schedule {
            Some(path) => FinalizePolicy::from_file(path).map_err(anyhow::Error::msg),
            None => {
                let mode: FinalizeMode = self
                    .finalize_mode
                    .parse()
                    .map_err(|e| anyhow::anyhow!("[api] finalize_mode: {e}"))?;
                Ok(FinalizePolicy::fixed(mode))
            }
        }
    }

    /// The api's settings from this section and the shared ones; reads the
    /// PEM files it names.
    pub fn api_config(&self, common: &service::Common) -> anyhow::Result<ApiConfig> {
        let mut config = ApiConfig::new(&common.acme.base_url);
        config.caa_identities = common.acme.caa_identities.clone();
        config.step_timeout = common.runner.step_timeout();
        config.retry_after = Duration::from_secs(self.retry_after_secs);
        config.finalize_timeout = Duration::from_secs(self.finalize_timeout_secs);
        if let Some(root) = &self.root_pem {
            config.root_pem = Some(std::fs::read_to_string(root)?);
        }
        config.finalize = PolicyHandle::new(self.finalize_policy()?);
        config.compat_abandon_after = Duration::from_secs(self.compat_abandon_after_secs);
        Ok(config)
    }

    pub fn sweep_interval(&self) -> Duration {
        Duration::from_millis(self.sweep_interval_ms)
    }

    /// Serves `router` on `listen` until `handle` shuts it down: HTTPS with
    /// `tls_chain` and `tls_key`, plain HTTP with neither.
    pub async fn serve(
        &self,
        router: axum::Router,
        handle: axum_server::Handle<SocketAddr>,
    ) -> anyhow::Result<()> {
        let service = router.into_make_service();
        tracing::info!(listen = %self.listen, "ACME api listening");
        match (&self.tls_chain, &self.tls_key) {
            (Some(chain), Some(key)) => {
                let tls = axum_server::tls_openssl::OpenSSLConfig::from_pem_chain_file(chain, key)?;
                axum_server::bind(self.listen)
                    .acceptor(crate::listener::https_acceptor(tls))
                    .handle(handle)
                    .serve(service)
                    .await?;
            }
            (None, None) => {
                axum_server::bind(self.listen)
                    .acceptor(crate::listener::http_acceptor())
                    .handle(handle)
                    .serve(service)
                    .await?
            }
            _ => anyhow::bail!("[api] tls_chain and tls_key go together"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn load(own: &str) -> Result<ApiSection, service::ConfigError> {
        let file = tempfile::NamedTempFile::new().unwrap();
        let text = format!(
            "[database]\nurl = \"sqlite://x\"\n[acme]\nbase_url = \"https://a\"\n[api]\n{own}"
        );
        std::fs::write(file.path(), text).unwrap();
        service::config::load(Some(file.path()), "api").map(|(_, own)| own)
    }

    #[test]
    fn defaults_and_modes() {
        let section = load("listen = \"127.0.0.1:1\"\n").unwrap();
        assert_eq!(section.retry_after_secs, 1);
        assert_eq!(section.sweep_interval(), Duration::from_secs(1));
        assert_eq!(
            section.finalize_policy().unwrap(),
            FinalizePolicy::fixed(FinalizeMode::Async)
        );
        let hybrid = load("listen = \"127.0.0.1:1\"\nfinalize_mode = \"hybrid\"\n").unwrap();
        assert_eq!(
            hybrid.finalize_policy().unwrap(),
            FinalizePolicy::fixed(FinalizeMode::Hybrid)
        );
        let bad = load("listen = \"127.0.0.1:1\"\nfinalize_mode = \"later\"\n").unwrap();
        let err = bad.finalize_policy().unwrap_err().to_string();
        assert!(err.contains("finalize_mode"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = load("listen = \"127.0.0.1:1\"\nlisten_port = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_port"), "{err}");
    }

    #[test]
    fn the_deployment_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config/api.toml");
        service::config::load::<ApiSection>(Some(&path), "api").unwrap();
    }
}
