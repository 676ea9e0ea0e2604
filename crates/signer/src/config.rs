//! `[signer]`: the signer binary's own config section, and the stage it
//! configures.

use crate::Signer;
use crate::ca::{CaError, IssuingCa, Pkcs11Source};
use crate::certificate::{OrderProfiles, Profile};
use crate::crls::CrlConfig;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use store::Store;

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SignerConfig {
    /// Holds root.pem, intermediate.pem and, unless `[signer.pkcs11]`
    /// names a token, intermediate-key.pem (mode 0600).
    pub ca_dir: PathBuf,
    /// The intermediate's key on a PKCS#11 token instead of in `ca_dir`.
    /// Absent: the key file, as always.
    #[serde(default)]
    pub pkcs11: Option<Pkcs11Source>,
    /// First serial byte, distinct per signer deployment (1..=127).
    #[serde(default = "default_prefix")]
    pub serial_prefix: u8,
    #[serde(default = "default_validity_days")]
    pub validity_days: u64,
    /// How revocations are published (`[signer.crl]`), checked as it loads.
    #[serde(default, deserialize_with = "checked_crl")]
    pub crl: CrlConfig,
    /// What the operator changed of the certificate profiles
    /// (`[signer.profiles.classic|tlsserver|shortlived]`: `validity_secs`,
    /// `common_name`), checked as it loads.
    #[serde(default, deserialize_with = "checked_profiles")]
    pub profiles: OrderProfiles,
}

fn checked_profiles<'de, D: serde::Deserializer<'de>>(d: D) -> Result<OrderProfiles, D::Error> {
    let profiles = OrderProfiles::deserialize(d)?;
    profiles.check().map_err(serde::de::Error::custom)?;
    Ok(profiles)
}

fn checked_crl<'de, D: serde::Deserializer<'de>>(d: D) -> Result<CrlConfig, D::Error> {
    let crl = CrlConfig::deserialize(d)?;
    crl.check().map_err(serde::de::Error::custom)?;
    Ok(crl)
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
        profile.order_profiles = self.profiles.clone();
        profile
    }

    /// The issuing CA: its certificates from `ca_dir`, its key from there
    /// or from the token, checked against each other before anything signs.
    pub fn load_ca(&self) -> Result<IssuingCa, CaError> {
        match &self.pkcs11 {
            None => IssuingCa::load(&self.ca_dir),
            Some(token) => IssuingCa::load_with_token(&self.ca_dir, token),
        }
    }

    /// The stage, once its CA is loaded (`ca_dir`) and its store connected.
    pub fn signer(&self, ca: IssuingCa, common: &service::Common, store: Store) -> Signer {
        Signer {
            store,
            ca,
            profile: self.profile(common.acme.public_base_url()),
            serial_prefix: self.serial_prefix,
            crl: self.crl.clone(),
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
        assert_eq!(profile.crl_url, "http://acme.test:14443/crl");
        let config = load("ca_dir = \"/ca\"\nvalidity_days = 7\n").unwrap();
        assert_eq!(
            config.profile("https://a").validity,
            Duration::from_secs(7 * 86_400)
        );
        assert!(load("").is_err(), "ca_dir is required");
        assert_eq!(config.crl, CrlConfig::default());
        // The profiles' lifetimes and contents are the operator's to set.
        let set = load(
            "ca_dir = \"/ca\"\n[signer.profiles.tlsserver]\nvalidity_secs = 2592000\n\
             common_name = true\n",
        )
        .unwrap();
        let tls = set
            .profile("https://a")
            .for_order(domain::CertificateProfile::TlsServer);
        assert_eq!(
            (tls.validity, tls.common_name),
            (Duration::from_secs(2_592_000), true)
        );
        let shortlived = set
            .profile("https://a")
            .for_order(domain::CertificateProfile::ShortLived);
        assert_eq!(shortlived.validity, Duration::from_secs(160 * 3600));
        for (bad, why) in [
            (
                "[signer.profiles.classic]\nvalidity_secs = 31536000\n",
                "200 days",
            ),
            ("[signer.profiles.shortlived]\ncommon_name = true\n", "IP"),
            ("[signer.profiles.custom]\nvalidity_secs = 3600\n", "custom"),
        ] {
            let err = load(&format!("ca_dir = \"/ca\"\n{bad}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let sharded =
            load("ca_dir = \"/ca\"\n[signer.crl]\nshards = 4\npublish_within_secs = 2\n").unwrap();
        assert_eq!(
            (sharded.crl.shards, sharded.crl.publish_within_secs),
            (4, 2)
        );
        let err = load("ca_dir = \"/ca\"\n[signer.crl]\nvalidity_secs = 1000000\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("10 days"), "{err}");
        assert_eq!(config.pkcs11, None, "the key file unless a token is named");
    }

    #[test]
    fn a_token_replaces_the_key_file() {
        let config = load(
            "ca_dir = \"/ca\"\n[signer.pkcs11]\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\n\
             token_label = \"kiln\"\nkey_label = \"issuing\"\npin_file = \"/run/secrets/pin\"\n",
        )
        .unwrap();
        let token = config.pkcs11.unwrap();
        assert_eq!(
            (token.token_label.as_str(), token.key_label.as_str()),
            ("kiln", "issuing")
        );
        assert_eq!(token.pin_file, Path::new("/run/secrets/pin"));
        assert_eq!(token.sessions, 4);
        // A PIN is never config text, and a missing key is a refusal.
        let err = load(
            "ca_dir = \"/ca\"\n[signer.pkcs11]\nmodule = \"/m.so\"\ntoken_label = \"k\"\n\
             key_label = \"i\"\npin = \"1234\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("pin"), "{err}");
        assert!(load("ca_dir = \"/ca\"\n[signer.pkcs11]\nmodule = \"/m.so\"\n").is_err());
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
