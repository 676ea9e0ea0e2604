//! `[signer]`: the signer binary's own config section, and the stage it
//! configures.

use crate::Signer;
use crate::ca::IssuingCa;
use crate::certificate::Profile;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use store::Store;

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SignerConfig {
    /// Holds root.pem, intermediate.pem and their keys (mode 0600).
    pub ca_dir: PathBuf,
    /// First serial byte, distinct per signer deployment (1..=127).
    #[serde(default = "default_prefix")]
    pub serial_prefix: u8,
    #[serde(default = "default_validity_days")]
    pub validity_days: u64,
}

fn default_prefix() -> u8 {
    1
}
fn default_validity_days() -> u64 {
    90
}

impl SignerConfig {
    /// The leaf profile: AIA and CRL URLs (plain http, Baseline
    /// Requirements) on the api's host, and this validity.
    pub fn profile(&self, base_url: &str) -> Profile {
        let mut profile = Profile::for_base_url(base_url.trim_end_matches('/'));
        profile.validity = Duration::from_secs(self.validity_days * 24 * 3600);
        profile
    }

    /// The stage, once its CA is loaded (`ca_dir`) and its store connected.
    pub fn signer(&self, ca: IssuingCa, common: &service::Common, store: Store) -> Signer {
        Signer {
            store,
            ca,
            profile: self.profile(&common.acme.base_url),
            serial_prefix: self.serial_prefix,
            step_timeout: common.runner.step_timeout(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn load(own: &str) -> Result<SignerConfig, service::ConfigError> {
        let file = tempfile::NamedTempFile::new().unwrap();
        let text = format!(
            "[database]\nurl = \"sqlite://x\"\n[acme]\nbase_url = \"https://a\"\n[signer]\n{own}"
        );
        std::fs::write(file.path(), text).unwrap();
        service::config::load(Some(file.path()), "signer").map(|(_, own)| own)
    }

    #[test]
    fn defaults_and_profile() {
        let config = load("ca_dir = \"/ca\"\n").unwrap();
        assert_eq!((config.serial_prefix, config.validity_days), (1, 90));
        let profile = config.profile("https://acme.test:14443/");
        assert_eq!(profile.validity, Profile::DEFAULT_VALIDITY);
        assert_eq!(profile.crl_url, "http://acme.test:14443/ca/crl");
        let config = load("ca_dir = \"/ca\"\nvalidity_days = 7\n").unwrap();
        assert_eq!(
            config.profile("https://a").validity,
            Duration::from_secs(7 * 86_400)
        );
        assert!(load("").is_err(), "ca_dir is required");
    }

    /// The benchmark knob is no part of the production signer's config
    /// (`signer-simulated-hsm` takes it as a flag).
    #[test]
    fn the_simulated_latency_knob_is_an_unknown_key() {
        let err = load("ca_dir = \"/ca\"\nsimulated_latency_ms = 20\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("simulated_latency_ms"), "{err}");
    }

    #[test]
    fn the_deployment_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config/signer.toml");
        service::config::load::<SignerConfig>(Some(&path), "signer").unwrap();
    }
}
