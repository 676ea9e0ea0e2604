//! `[api]`: the api binary's own config section, and serving the router on
//! its listener (HTTPS, or plain HTTP behind a TLS-terminating proxy).

use crate::rate_limits::RateLimits;
use crate::{ApiConfig, FinalizeMode, FinalizePolicy, PolicyHandle};
use anyhow::Context as _;
use domain::{IdentifierPolicy, PublicSuffixList};
use pkix::DebianWeakKeys;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    /// Where relying parties fetch the issuer certificate and the CRLs over
    /// plain HTTP (`api::public_http`); what `[acme] public_base_url` must
    /// reach. Unset: not served by this replica.
    #[serde(default)]
    pub public_http_listen: Option<SocketAddr>,
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
    /// Special-use domains (RFC 6761 and later) whose names may be issued
    /// for: any of test, example, internal, alt, local, home.arpa. Default
    /// none, as a public CA must.
    #[serde(default)]
    pub allowed_special_use_domains: Vec<String>,
    /// Loopback addresses (127.0.0.0/8, ::1) may be `ip` identifiers: only
    /// for a test deployment whose validators may reach loopback
    /// (`[validator] allow_non_public`). Public addresses always may.
    #[serde(default)]
    pub allow_loopback_ip_identifiers: bool,
    /// A valid authorization validated within this many seconds is reused
    /// in the same account's new orders for the same identifier; 0 never.
    /// Unset: for as long as authorizations are valid (7 days), as Let's
    /// Encrypt does.
    #[serde(default)]
    pub authz_reuse_secs: Option<u64>,
    /// The challenge types new authorizations offer, where the identifier
    /// admits them. Unset: all but `dns-persist-01`, a standing record that
    /// an operator offers deliberately (it names `[acme] caa_identities`).
    #[serde(default)]
    pub challenge_types: Option<Vec<domain::ChallengeType>>,
    /// Names refused with `rejectedIdentifier`: `name` exactly, `*.name`
    /// every name under it, `.name` it and every name under it.
    #[serde(default)]
    pub blocked_names: Vec<String>,
    /// More blocklist entries, one a line (`#` comments), read at start-up.
    #[serde(default)]
    pub blocked_names_file: Option<PathBuf>,
    /// A newer `public_suffix_list.dat` to use instead of the built-in
    /// list, read at start-up.
    #[serde(default)]
    pub public_suffix_list: Option<PathBuf>,
    /// Debian's weak-key lists (CVE-2008-0166; `openssl-blacklist`'s
    /// `blacklist.RSA-2048` and the like), read at start-up: an RSA account
    /// key on one is refused (`badPublicKey`), a CSR key (`badCSR`).
    #[serde(default)]
    pub debian_weak_key_files: Vec<PathBuf>,
    /// `[api.rate_limits]` (see `api::rate_limits`): absent, Let's
    /// Encrypt's published limits apply; in the table, a key absent or 0
    /// turns that limit off (an empty table: every limit off).
    #[serde(default)]
    pub rate_limits: Option<RateLimits>,
    /// Behind a TLS-terminating proxy: the header the proxy appends the
    /// client's address to (e.g. "X-Forwarded-For"), for the per-address
    /// limit. Absent: the TCP peer's address.
    #[serde(default)]
    pub client_address_header: Option<String>,
    /// The terms of service URL (the directory's `meta.termsOfService`);
    /// newAccount must then agree to them.
    #[serde(default)]
    pub terms_of_service: Option<String>,
    /// Requests in flight at once; beyond it 503 with Retry-After.
    #[serde(default = "default_max_in_flight_requests")]
    pub max_in_flight_requests: usize,
    /// RFC 8555 §7.3.4: every new account needs an External Account
    /// Binding with a key from `kiln eab create --database-url …`.
    #[serde(default)]
    pub external_account_required: bool,
}

fn default_max_in_flight_requests() -> usize {
    crate::request_limits::DEFAULT_MAX_IN_FLIGHT
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

    /// The identifier policy of this section's settings; reads the files
    /// they name.
    pub fn identifier_policy(&self) -> anyhow::Result<IdentifierPolicy> {
        identifier_policy(&IdentifierSettings {
            allowed_special_use_domains: &self.allowed_special_use_domains,
            blocked_names: &self.blocked_names,
            blocked_names_file: self.blocked_names_file.as_deref(),
            public_suffix_list: self.public_suffix_list.as_deref(),
            loopback_ip_identifiers: self.allow_loopback_ip_identifiers,
        })
    }

    /// Reads and checks what the section names that only a start would
    /// otherwise read: the identifier policy and the weak-key lists.
    pub fn checked(self) -> anyhow::Result<CheckedApiSection> {
        Ok(CheckedApiSection {
            identifiers: Arc::new(self.identifier_policy()?),
            debian_weak_keys: Arc::new(debian_weak_keys(&self.debian_weak_key_files)?),
            section: self,
        })
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
        // The peer address reaches handlers (the per-address rate limit).
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
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

/// `[api]` with the files it names read and checked: the identifier policy
/// and the weak-key lists are built while the config loads (`try_from`), so
/// a bad blocklist entry or a missing list fails `--check-config` with exit
/// code 2 as a bad key does, not only a start; the start then uses what was
/// built, without reading the files again.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "ApiSection")]
pub struct CheckedApiSection {
    pub section: ApiSection,
    identifiers: Arc<IdentifierPolicy>,
    debian_weak_keys: Arc<DebianWeakKeys>,
}

impl TryFrom<ApiSection> for CheckedApiSection {
    type Error = String;
    fn try_from(section: ApiSection) -> Result<Self, String> {
        section.checked().map_err(|e| format!("{e:#}"))
    }
}

impl std::ops::Deref for CheckedApiSection {
    type Target = ApiSection;
    fn deref(&self) -> &ApiSection {
        &self.section
    }
}

impl CheckedApiSection {
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
        config.identifiers = self.identifiers.clone();
        config.debian_weak_keys = self.debian_weak_keys.clone();
        config.rate_limits = self
            .rate_limits
            .clone()
            .unwrap_or_else(RateLimits::lets_encrypt);
        config.client_address_header = self.client_address_header.clone();
        config.terms_of_service = self.terms_of_service.clone();
        config.max_in_flight_requests = self.max_in_flight_requests.max(1);
        config.external_account_required = self.external_account_required;
        if let Some(secs) = self.authz_reuse_secs {
            config.authz_reuse = Duration::from_secs(secs);
        }
        if let Some(types) = &self.challenge_types {
            config.challenge_types = types.clone();
        }
        config.check_challenge_types()?;
        Ok(config)
    }
}

/// The weak-key lists in `files`, for `[api] debian_weak_key_files` and the
/// all-in-one's `--debian-weak-keys`. A missing file or a malformed line is
/// an error naming it (and the line), so the process does not start
/// without a list it was given.
pub fn debian_weak_keys(files: &[PathBuf]) -> anyhow::Result<DebianWeakKeys> {
    let keys = DebianWeakKeys::load(files)?;
    if !files.is_empty() {
        tracing::info!(
            files = files.len(),
            keys = keys.len(),
            "Debian weak-key lists loaded"
        );
    }
    Ok(keys)
}

/// The identifier settings, from `[api]` or the all-in-one's flags.
pub struct IdentifierSettings<'a> {
    pub allowed_special_use_domains: &'a [String],
    pub blocked_names: &'a [String],
    pub blocked_names_file: Option<&'a Path>,
    pub public_suffix_list: Option<&'a Path>,
    /// Loopback addresses may be `ip` identifiers (a test deployment whose
    /// challenge servers are on the CA's machine).
    pub loopback_ip_identifiers: bool,
}

/// The identifier policy these settings describe; reads the files they
/// name. A bad entry or file is an error naming it, so the process does not
/// start with a policy other than the one configured.
pub fn identifier_policy(settings: &IdentifierSettings) -> anyhow::Result<IdentifierPolicy> {
    let mut policy = IdentifierPolicy::default()
        .allow_special_use(settings.allowed_special_use_domains)
        .map_err(|e| anyhow::anyhow!("allowed special-use domains: {e}"))?
        .block_names(settings.blocked_names)
        .map_err(|e| anyhow::anyhow!("blocked names: {e}"))?;
    if settings.loopback_ip_identifiers {
        policy = policy.allow_loopback_ips();
    }
    if let Some(path) = settings.blocked_names_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the blocked names file {}", path.display()))?;
        policy = policy
            .block_names(&domain::identifier_policy::blocklist_entries(&text))
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    if let Some(path) = settings.public_suffix_list {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the public suffix list {}", path.display()))?;
        let list = PublicSuffixList::parse(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        policy = policy.with_suffix_list(list);
    }
    Ok(policy)
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

    /// The api's configuration from an `[api]` section with `own`.
    fn api_config(own: &str) -> anyhow::Result<ApiConfig> {
        let file = tempfile::NamedTempFile::new().unwrap();
        let text = format!(
            "[database]\nurl = \"sqlite://x\"\n[acme]\nbase_url = \"https://a\"\n\
             [api]\nlisten = \"127.0.0.1:1\"\n{own}"
        );
        std::fs::write(file.path(), text).unwrap();
        let (common, section) =
            service::config::load::<CheckedApiSection>(Some(file.path()), "api")?;
        section.api_config(&common)
    }

    /// The identifier policy an `[api]` section with `own` builds.
    fn policy(own: &str) -> anyhow::Result<Arc<IdentifierPolicy>> {
        Ok(api_config(own)?.identifiers)
    }

    #[test]
    fn external_account_binding_is_off_unless_required() {
        let config = |own: &str| api_config(own).unwrap();
        assert!(!config("").external_account_required);
        assert!(config("external_account_required = true\n").external_account_required);
    }

    #[test]
    fn identifier_settings_build_the_policy() {
        let strict = policy("").unwrap();
        assert!(
            strict.check("example.test").is_err(),
            "no special-use by default"
        );
        assert!(strict.check("example.com").is_ok());

        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join("blocked.txt");
        std::fs::write(&blocked, "# lost keys\n.corp.example.org\n").unwrap();
        let configured = policy(&format!(
            "allowed_special_use_domains = [\"test\"]\nblocked_names = [\"bad.example.com\"]\n\
             blocked_names_file = {:?}\n",
            blocked.display().to_string()
        ))
        .unwrap();
        assert!(configured.check("example.test").is_ok());
        assert!(configured.check("bad.example.com").is_err());
        assert!(configured.check("a.corp.example.org").is_err());
        assert!(configured.check("good.example.com").is_ok());

        let list = dir.path().join("psl.dat");
        std::fs::write(&list, "<html>not the list</html>").unwrap();
        let err = policy(&format!(
            "public_suffix_list = {:?}\n",
            list.display().to_string()
        ));
        assert!(err.unwrap_err().to_string().contains("psl.dat"));
        let err = policy("allowed_special_use_domains = [\"onion\"]\n").unwrap_err();
        assert!(err.to_string().contains("onion"), "{err}");
        let err = policy("blocked_names = [\"a..b\"]\n").unwrap_err();
        assert!(err.to_string().contains("a..b"), "{err}");
    }

    /// What the config check (`--check-config`, a start) says of `own`.
    fn check(own: &str) -> Result<CheckedApiSection, String> {
        let file = tempfile::NamedTempFile::new().unwrap();
        let text = format!(
            "[database]\nurl = \"sqlite://x\"\n[acme]\nbase_url = \"https://a\"\n\
             [api]\nlisten = \"127.0.0.1:1\"\n{own}"
        );
        std::fs::write(file.path(), text).unwrap();
        service::config::load::<CheckedApiSection>(Some(file.path()), "api")
            .map(|(_, section)| section)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn loading_the_config_builds_the_policies() {
        let err = check("blocked_names = [\"a..b\"]\n").unwrap_err();
        assert!(err.contains("a..b"), "{err}");
        let err = check("blocked_names_file = \"/nonexistent/blocked.txt\"\n").unwrap_err();
        assert!(err.contains("/nonexistent/blocked.txt"), "{err}");
        let err =
            check("debian_weak_key_files = [\"/nonexistent/blacklist.RSA-2048\"]\n").unwrap_err();
        assert!(err.contains("/nonexistent/blacklist.RSA-2048"), "{err}");
        assert!(check("blocked_names = [\".corp.example\"]\n").is_ok());
    }

    #[test]
    fn weak_key_lists_are_loaded_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let weak = openssl::rsa::Rsa::generate(2048).unwrap();
        let n = weak.n().to_vec();
        let list = dir.path().join("blacklist.RSA-2048");
        let text = format!(
            "# made by a test\n{}\n",
            pkix::debian_weak_keys::fingerprint(&n)
        );
        std::fs::write(&list, text).unwrap();
        let section = check(&format!(
            "debian_weak_key_files = [{:?}]\n",
            list.display().to_string()
        ))
        .unwrap();
        let common = load_common();
        let keys = section.api_config(&common).unwrap().debian_weak_keys;
        assert_eq!(keys.len(), 1);
        assert!(keys.contains(&n));
        // None configured: an empty list.
        let none = check("").unwrap().api_config(&common).unwrap();
        assert!(none.debian_weak_keys.is_empty());

        std::fs::write(&list, "# ok\nnot-a-suffix\n").unwrap();
        let err = check(&format!(
            "debian_weak_key_files = [{:?}]\n",
            list.display().to_string()
        ))
        .unwrap_err();
        assert!(err.contains("blacklist.RSA-2048:2"), "{err}");
    }

    fn load_common() -> service::Common {
        let file = tempfile::NamedTempFile::new().unwrap();
        let text = "[database]\nurl = \"sqlite://x\"\n[acme]\nbase_url = \"https://a\"\n\
                    [api]\nlisten = \"127.0.0.1:1\"\n";
        std::fs::write(file.path(), text).unwrap();
        service::config::load::<ApiSection>(Some(file.path()), "api")
            .unwrap()
            .0
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
