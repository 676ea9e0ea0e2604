//! Configuration: one TOML file per binary plus environment overrides.
//!
//! The file has the shared sections (`database`, `broker`, `admin`, `runner`,
//! `acme`, `telemetry`) and the binary's own section named after it (`[signer]`, …).
//! Unknown keys are refused, naming the key. Environment variables
//! `KILN_<SECTION>__<KEY>` override the file (e.g. `KILN_DATABASE__URL`).
//! Secrets (database and broker URLs carry passwords) may come from a file
//! (`url_file`) and never appear in logs or `Debug` output.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Value};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SHARED_SECTIONS: &[&str] = &["database", "broker", "admin", "runner", "acme", "telemetry"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error("unknown config key {0:?}")]
    UnknownKey(String),
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        ConfigError::Invalid(e.to_string())
    }
}

/// A secret given inline or, better, as a file path.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    url_file: Option<PathBuf>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// The URL, read from `url_file` if that is set.
    pub fn resolve(&self, what: &str) -> Result<String, ConfigError> {
        match (&self.url, &self.url_file) {
            (_, Some(path)) => std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .map_err(|source| ConfigError::Io {
                    path: path.clone(),
                    source,
                }),
            (Some(url), None) => Ok(url.clone()),
            (None, None) => Err(ConfigError::Invalid(format!(
                "{what}.url or {what}.url_file is required"
            ))),
        }
    }
}

/// `[database]`: the URL (a secret, as for `Secret`) and this process's
/// share of the server's connections.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    url_file: Option<PathBuf>,
    /// PostgreSQL connections this process holds at most. Every replica of
    /// every binary has its own pool, so their sum must stay below the
    /// server's `max_connections` (100 by default) or a burst starves them all.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_max_connections() -> u32 {
    store::DEFAULT_MAX_CONNECTIONS
}

impl Database {
    /// The URL, read from `url_file` if that is set.
    pub fn resolve(&self, what: &str) -> Result<String, ConfigError> {
        Secret {
            url: self.url.clone(),
            url_file: self.url_file.clone(),
        }
        .resolve(what)
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("url", &"<redacted>")
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Broker {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    url_file: Option<PathBuf>,
    /// Prefixes every queue and exchange name (isolates test runs).
    #[serde(default)]
    pub prefix: String,
}

impl Broker {
    pub fn url(&self) -> Result<String, ConfigError> {
        Secret {
            url: self.url.clone(),
            url_file: self.url_file.clone(),
        }
        .resolve("broker")
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("url", &"<redacted>")
            .field("prefix", &self.prefix)
            .finish()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Health, readiness and metrics; never the ACME port.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9100))
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runner {
    /// Jobs handled at once by this replica (also the broker prefetch).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Deliveries of one job before its order is given up.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_backoff_base_ms")]
    pub backoff_base_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// A pipeline step not done this long after it began is re-driven by
    /// the sweeper.
    #[serde(default = "default_step_timeout_secs")]
    pub step_timeout_secs: u64,
}

fn default_step_timeout_secs() -> u64 {
    30
}

fn default_concurrency() -> usize {
    16
}
fn default_max_attempts() -> u32 {
    8
}
fn default_backoff_base_ms() -> u64 {
    250
}
fn default_backoff_max_ms() -> u64 {
    30_000
}

impl Default for Runner {
    fn default() -> Self {
        Runner {
            concurrency: default_concurrency(),
            max_attempts: default_max_attempts(),
            backoff_base_ms: default_backoff_base_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            step_timeout_secs: default_step_timeout_secs(),
        }
    }
}

impl Runner {
    pub fn step_timeout(&self) -> Duration {
        Duration::from_secs(self.step_timeout_secs)
    }

    pub fn runner_config(&self) -> queue::RunnerConfig {
        queue::RunnerConfig {
            concurrency: self.concurrency,
            max_attempts: self.max_attempts,
            backoff_base: Duration::from_millis(self.backoff_base_ms),
            backoff_max: Duration::from_millis(self.backoff_max_ms),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acme {
    /// The URL clients reach the api at, e.g. `https://acme.example.com`;
    /// account URLs (CAA `accounturi`) and AIA/CRL URLs derive from it.
    pub base_url: String,
    /// The issuer domain names CAA records must name to allow Kiln.
    #[serde(default = "default_caa_identities")]
    pub caa_identities: Vec<String>,
    /// The plain-HTTP base written into every leaf's AIA and CRL DP, where
    /// the api's public listener (`[api] public_http_listen`) is reached,
    /// e.g. `http://pki.example.com`. Unset: `base_url` over `http://`.
    #[serde(default)]
    pub public_base_url: Option<String>,
}

fn default_caa_identities() -> Vec<String> {
    vec!["kiln.test".into()]
}

impl Acme {
    /// The base of AIA and CRL URLs ([`Acme::public_base_url`], else the
    /// ACME base, which the signer turns into `http://`).
    pub fn public_base_url(&self) -> &str {
        self.public_base_url.as_deref().unwrap_or(&self.base_url)
    }

    pub fn account_url_prefix(&self) -> String {
        format!("{}/acme/acct/", self.base_url.trim_end_matches('/'))
    }
}

/// Tracing (`[telemetry]`). Every key is optional; an unset key falls back
/// to the standard OpenTelemetry environment variable, then to the default
/// (see `crate::telemetry`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    /// OTLP/HTTP (protobuf) collector base URL, e.g.
    /// `http://otel-collector:4318`; spans go to `{endpoint}/v1/traces`.
    /// Unset: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (full URL) or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (base URL); neither: spans are not
    /// exported (trace ids still appear in logs).
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the spans. Unset: `OTEL_SERVICE_NAME`, else the
    /// binary's name.
    #[serde(default)]
    pub service_name: Option<String>,
    /// Fraction of new traces kept (0.0–1.0), parent-based: a stage follows
    /// the api's decision for the order. Unset: `OTEL_TRACES_SAMPLER` /
    /// `OTEL_TRACES_SAMPLER_ARG`, else every trace.
    #[serde(default)]
    pub sampling_ratio: Option<f64>,
    /// `parent` (default): a stage's span is a child of the span that
    /// published its job, so an order is one trace. `link`: each stage's
    /// span starts a new trace with a span link to the publisher's.
    #[serde(default)]
    pub propagation: PropagationSetting,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PropagationSetting {
    #[default]
    Parent,
    Link,
}

impl From<PropagationSetting> for queue::Propagation {
    fn from(p: PropagationSetting) -> Self {
        match p {
            PropagationSetting::Parent => queue::Propagation::Parent,
            PropagationSetting::Link => queue::Propagation::Link,
        }
    }
}

/// The sections every binary shares.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Common {
    pub database: Database,
    pub broker: Option<Broker>,
    #[serde(default = "default_admin")]
    pub admin: Admin,
    #[serde(default)]
    pub runner: Runner,
    pub acme: Acme,
    #[serde(default)]
    pub telemetry: Telemetry,
}

fn default_admin() -> Admin {
    Admin {
        listen: default_admin_listen(),
    }
}

/// Loads `path` (if any) and the environment; splits the binary's own
/// section `section` from the shared ones and refuses anything else.
pub fn load<S: DeserializeOwned>(
    path: Option<&Path>,
    section: &str,
) -> Result<(Common, S), ConfigError> {
    let mut figment = Figment::new();
    if let Some(path) = path {
        if !path.exists() {
            return Err(ConfigError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        figment = figment.merge(Toml::file(path));
    }
    // Only KILN_<SECTION>__<KEY> variables are config; KILN_DATA_DIR and the
    // like belong to the all-in-one binary's flags.
    figment = figment.merge(
        Env::prefixed("KILN_")
            .filter(|k| k.as_str().contains("__"))
            .split("__"),
    );
    let mut root: Dict = figment.extract()?;
    for key in root.keys() {
        if key != section && !SHARED_SECTIONS.contains(&key.as_str()) {
            return Err(ConfigError::UnknownKey(key.clone()));
        }
    }
    let own = root
        .remove(section)
        .unwrap_or_else(|| Value::from(Dict::new()));
    let stage: S = Figment::from(Serialized::defaults(own))
        .extract()
        .map_err(|e| in_section(section, e))?;
    let common: Common = Figment::from(Serialized::defaults(root)).extract()?;
    Ok((common, stage))
}

fn in_section(section: &str, e: figment::Error) -> ConfigError {
    ConfigError::Invalid(format!("[{section}]: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Own {
        #[serde(default)]
        knob: u32,
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    const BASE: &str = "[database]\nurl = \"sqlite://x\"\n[acme]\nbase_url = \"https://a\"\n";

    #[test]
    fn loads_shared_and_own_sections() {
        let file = write(&format!(
            "{BASE}[signer]\nknob = 3\n[runner]\nconcurrency = 2\n"
        ));
        let (common, own): (Common, Own) = load(Some(file.path()), "signer").unwrap();
        assert_eq!(own, Own { knob: 3 });
        assert_eq!(common.runner.concurrency, 2);
        assert_eq!(common.database.resolve("database").unwrap(), "sqlite://x");
        assert!(
            !format!("{common:?}").contains("sqlite://x"),
            "secrets never print"
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let file = write(&format!("{BASE}[signr]\nknob = 3\n"));
        let err = load::<Own>(Some(file.path()), "signer")
            .unwrap_err()
            .to_string();
        assert!(err.contains("signr"), "{err}");
        let file = write(&format!("{BASE}[signer]\nnob = 3\n"));
        let err = load::<Own>(Some(file.path()), "signer")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nob"), "{err}");
        let file = write(&format!("{BASE}[runner]\nconcurency = 3\n"));
        let err = load::<Own>(Some(file.path()), "signer")
            .unwrap_err()
            .to_string();
        assert!(err.contains("concurency"), "{err}");
    }

    #[test]
    fn telemetry_is_optional_and_checked() {
        let file = write(BASE);
        let (common, _): (Common, Own) = load(Some(file.path()), "signer").unwrap();
        assert_eq!(common.telemetry.otlp_endpoint, None);
        assert_eq!(common.telemetry.propagation, PropagationSetting::Parent);
        let file = write(&format!(
            "{BASE}[telemetry]\notlp_endpoint = \"http://c:4318\"\nservice_name = \"s\"\nsampling_ratio = 0.5\npropagation = \"link\"\n"
        ));
        let (common, _): (Common, Own) = load(Some(file.path()), "signer").unwrap();
        assert_eq!(
            common.telemetry.otlp_endpoint.as_deref(),
            Some("http://c:4318")
        );
        assert_eq!(common.telemetry.sampling_ratio, Some(0.5));
        assert_eq!(common.telemetry.propagation, PropagationSetting::Link);
        let file = write(&format!("{BASE}[telemetry]\npropagation = \"sideways\"\n"));
        assert!(load::<Own>(Some(file.path()), "signer").is_err());
        let file = write(&format!("{BASE}[telemetry]\nendpoint = \"x\"\n"));
        let err = load::<Own>(Some(file.path()), "signer")
            .unwrap_err()
            .to_string();
        assert!(err.contains("endpoint"), "{err}");
    }

    #[test]
    fn database_pool_size_has_a_default_and_can_be_set() {
        let file = write(BASE);
        let (common, _): (Common, Own) = load(Some(file.path()), "signer").unwrap();
        assert_eq!(
            common.database.max_connections,
            store::DEFAULT_MAX_CONNECTIONS
        );
        let file = write(
            "[database]\nurl = \"postgres://db/k\"\nmax_connections = 4\n[acme]\nbase_url = \"https://a\"\n",
        );
        let (common, _): (Common, Own) = load(Some(file.path()), "signer").unwrap();
        assert_eq!(common.database.max_connections, 4);
        assert!(!format!("{common:?}").contains("postgres://db/k"));
    }

    #[test]
    fn secrets_can_come_from_files() {
        let secret = write("postgres://user:pw@db/kiln\n");
        let file = write(&format!(
            "[database]\nurl_file = {:?}\n[acme]\nbase_url = \"https://a\"\n",
            secret.path()
        ));
        let (common, _): (Common, Own) = load(Some(file.path()), "signer").unwrap();
        assert_eq!(
            common.database.resolve("database").unwrap(),
            "postgres://user:pw@db/kiln"
        );
    }
}
