//! `[validator]`: the validator binary's own config section.

use crate::address::AddressPolicy;
use crate::challenge::ChallengePorts;
use crate::roles::Roles;
use dns::DnsMode;
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ValidatorConfig {
    /// Where every lookup goes; without it, the system's resolvers
    /// (`/etc/resolv.conf`). A lookup that fails is never answered from
    /// anywhere else: a failed CAA lookup forbids issuance.
    #[serde(default)]
    pub dns_server: Option<SocketAddr>,
    #[serde(default = "default_http01")]
    pub http01_port: u16,
    #[serde(default = "default_tlsalpn01")]
    pub tlsalpn01_port: u16,
    /// Non-public ranges (CIDR) validation may connect to anyway, e.g.
    /// `["127.0.0.0/8", "::1/128"]` for challenge servers on this machine.
    /// Empty in production: only public addresses (see `validator::address`).
    #[serde(default)]
    pub allow_non_public: Vec<ipnet::IpNet>,
    /// Set on a remote perspective (MPIC): its name, unique in the
    /// deployment, `NAME` or `NAME@REGION` (an RIR: ARIN, RIPE, APNIC,
    /// LACNIC, AFRINIC). It consumes only its own queue and answers only
    /// corroboration requests, with its own resolver and network.
    #[serde(default)]
    pub perspective: Option<String>,
    /// The primary's remote perspectives and their quorum.
    #[serde(default)]
    pub mpic: mpic::MpicConfig,
}

fn default_http01() -> u16 {
    80
}
fn default_tlsalpn01() -> u16 {
    443
}

/// `[validator]` with its roles worked out while the config loads
/// (`try_from`): the perspective name and the primary's remotes parsed once
/// and checked against the BRs' minimum, so a validator that could not
/// start fails `--check-config` with exit code 2 as a bad key does; the
/// start then uses these roles.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "ValidatorConfig")]
pub struct CheckedValidatorConfig {
    pub config: ValidatorConfig,
    pub roles: Roles,
}

impl TryFrom<ValidatorConfig> for CheckedValidatorConfig {
    type Error = String;
    fn try_from(config: ValidatorConfig) -> Result<Self, String> {
        let roles = Roles::of(&config, store::now_ms() / 1000).map_err(|e| format!("{e:#}"))?;
        Ok(CheckedValidatorConfig { config, roles })
    }
}

impl ValidatorConfig {
    pub fn dns_mode(&self) -> DnsMode {
        self.dns_server.map_or(DnsMode::System, DnsMode::Server)
    }

    pub fn addresses(&self) -> AddressPolicy {
        AddressPolicy {
            also_allowed: self.allow_non_public.clone(),
        }
    }

    pub fn ports(&self) -> ChallengePorts {
        ChallengePorts {
            http01: self.http01_port,
            tlsalpn01: self.tlsalpn01_port,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn load(own: &str) -> Result<ValidatorConfig, service::ConfigError> {
        let file = tempfile::NamedTempFile::new().unwrap();
        let text = format!(
            "[database]\nurl = \"sqlite://x\"\n[acme]\nbase_url = \"https://a\"\n[validator]\n{own}"
        );
        std::fs::write(file.path(), text).unwrap();
        service::config::load(Some(file.path()), "validator").map(|(_, own)| own)
    }

    #[test]
    fn defaults_are_production_ports_and_the_system_resolver() {
        let config = load("").unwrap();
        assert_eq!(
            config.ports(),
            ChallengePorts {
                http01: 80,
                tlsalpn01: 443
            }
        );
        assert!(matches!(config.dns_mode(), DnsMode::System));
        assert_eq!(config.addresses(), AddressPolicy::public_only());
        let config = load("dns_server = \"127.0.0.1:8053\"\nhttp01_port = 5002\n").unwrap();
        assert!(matches!(config.dns_mode(), DnsMode::Server(a) if a.port() == 8053));
        assert_eq!(config.ports().http01, 5002);
    }

    #[test]
    fn non_public_ranges_are_allowed_only_when_listed() {
        let config = load("allow_non_public = [\"127.0.0.0/8\", \"::1/128\"]\n").unwrap();
        assert_eq!(config.addresses(), AddressPolicy::public_and_loopback());
        let err = load("allow_non_public = [\"127.0.0.1/33\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("allow_non_public"), "{err}");
    }

    #[test]
    fn production_refuses_fewer_remotes_than_the_brs_require() {
        // 2026-12-15: five.
        let at = 1_797_292_800;
        let four = "remotes = [\"a@ARIN\", \"b@RIPE\", \"c@APNIC\", \"d@ARIN\"]\n";
        let config = load(&format!("[validator.mpic]\n{four}")).unwrap();
        let err = config.mpic.remotes(at).unwrap_err();
        assert!(err.contains("require 5"), "{err}");
        assert_eq!(config.mpic.remotes(at - 86_400 * 30).unwrap().len(), 4);
        let test = load(&format!("[validator.mpic]\n{four}test_deployment = true\n")).unwrap();
        assert_eq!(test.mpic.remotes(at).unwrap().len(), 4);
        let none = load("[validator.mpic]\ntest_deployment = true\n").unwrap();
        assert!(none.mpic.remotes(at).unwrap().is_empty());
        assert!(load("").unwrap().mpic.remotes(at).is_err());
    }

    #[test]
    fn remotes_need_regions_outside_a_test_deployment() {
        let names = "remotes = [\"a\", \"b@RIPE\", \"c@APNIC\", \"d@ARIN\", \"e@ARIN\"]\n";
        let config = load(&format!("[validator.mpic]\n{names}")).unwrap();
        let err = config.mpic.remotes(1_797_292_800).unwrap_err();
        assert!(err.contains("no region"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = load("http_port = 80\n").unwrap_err().to_string();
        assert!(err.contains("http_port"), "{err}");
    }

    #[test]
    fn the_deployment_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config/validator.toml");
        let (_, checked) =
            service::config::load::<CheckedValidatorConfig>(Some(&path), "validator").unwrap();
        assert!(checked.roles.uncorroborated(), "a test deployment");
    }
}
