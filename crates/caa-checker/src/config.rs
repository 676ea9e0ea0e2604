//! `[caa-checker]`: the caa-checker binary's own config section.

use dns::DnsMode;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CaaCheckerConfig {
    /// Where every lookup goes; without it, the system's resolvers
    /// (`/etc/resolv.conf`). A lookup that fails is never answered from
    /// anywhere else: a failed CAA lookup forbids issuance.
    #[serde(default)]
    pub dns_server: Option<SocketAddr>,
    /// Authorizations validated longer ago than this are rechecked.
    #[serde(default = "default_recheck_after_secs")]
    pub recheck_after_secs: u64,
    /// The remote perspectives that repeat a recheck (the same as
    /// `[validator.mpic]`'s).
    #[serde(default)]
    pub mpic: mpic::MpicConfig,
}

fn default_recheck_after_secs() -> u64 {
    7 * 3600
}

/// `[caa-checker]` with its remote perspectives parsed and checked against
/// the BRs' minimum while the config loads (`try_from`), as the validator's
/// are: a caa-checker that could not start fails `--check-config` with exit
/// code 2, and the start uses these remotes.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "CaaCheckerConfig")]
pub struct CheckedCaaCheckerConfig {
    pub config: CaaCheckerConfig,
    pub remotes: Vec<mpic::RemotePerspective>,
}

impl TryFrom<CaaCheckerConfig> for CheckedCaaCheckerConfig {
    type Error = String;
    fn try_from(config: CaaCheckerConfig) -> Result<Self, String> {
        let remotes = config
            .mpic
            .remotes(store::now_ms() / 1000)
            .map_err(|e| format!("[caa-checker.mpic]: {e}"))?;
        Ok(CheckedCaaCheckerConfig { config, remotes })
    }
}

impl CaaCheckerConfig {
    pub fn dns_mode(&self) -> DnsMode {
        self.dns_server.map_or(DnsMode::System, DnsMode::Server)
    }

    pub fn recheck_after(&self) -> Duration {
        Duration::from_secs(self.recheck_after_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn load(own: &str) -> Result<CaaCheckerConfig, service::ConfigError> {
        let file = tempfile::NamedTempFile::new().unwrap();
        let text = format!(
            "[database]\nurl = \"sqlite://x\"\n[acme]\nbase_url = \"https://a\"\n[caa-checker]\n{own}"
        );
        std::fs::write(file.path(), text).unwrap();
        service::config::load(Some(file.path()), "caa-checker").map(|(_, own)| own)
    }

    #[test]
    fn rechecks_after_7_hours_by_default() {
        let config = load("").unwrap();
        assert_eq!(config.recheck_after(), Duration::from_secs(7 * 3600));
        assert!(matches!(config.dns_mode(), DnsMode::System));
        let config = load("recheck_after_secs = 0\n").unwrap();
        assert_eq!(config.recheck_after(), Duration::ZERO);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = load("recheck_after = 1\n").unwrap_err().to_string();
        assert!(err.contains("recheck_after"), "{err}");
    }

    #[test]
    fn the_deployment_example_loads() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config/caa-checker.toml");
        service::config::load::<CheckedCaaCheckerConfig>(Some(&path), "caa-checker").unwrap();
    }

    #[test]
    fn too_few_remotes_are_refused_while_the_config_loads() {
        let err = service::config::load::<CheckedCaaCheckerConfig>(
            Some(&write("[caa-checker.mpic]\nremotes = [\"a@ARIN\"]\n")),
            "caa-checker",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("[caa-checker.mpic]"), "{err}");
        assert!(err.contains("test_deployment"), "{err}");
        let test = "[caa-checker.mpic]\nremotes = [\"a@ARIN\"]\ntest_deployment = true\n";
        let checked =
            service::config::load::<CheckedCaaCheckerConfig>(Some(&write(test)), "caa-checker")
                .unwrap()
                .1;
        assert_eq!(checked.remotes.len(), 1);
    }

    /// A config file with `own` as its `[caa-checker]`, removed when dropped.
    fn write(own: &str) -> tempfile::TempPath {
        let file = tempfile::NamedTempFile::new().unwrap().into_temp_path();
        let text = format!(
            "[database]\nurl = \"sqlite://x\"\n[acme]\nbase_url = \"https://a\"\n[caa-checker]\n{own}"
        );
        std::fs::write(&file, text).unwrap();
        file
    }
}
