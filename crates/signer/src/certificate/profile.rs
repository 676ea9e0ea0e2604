//! What Kiln issues: validity, the AIA and CRL URLs, and the subject key
//! types a leaf may carry.

use std::time::Duration;

use openssl::nid::Nid;
use openssl::pkey::{HasPublic, Id, PKeyRef};

use super::CertError;

/// The longest serial RFC 5280 allows, in bytes.
pub(super) const MAX_SERIAL_LEN: usize = 20;

/// Issuance policy for leaf certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// Maximum validity period, counted inclusively as RFC 5280 does
    /// (`notAfter - notBefore + 1s`).
    pub validity: Duration,
    /// How far `notBefore` is set before issuance, for relying-party clock skew.
    pub backdate: Duration,
    pub aia_issuer_url: String,
    pub crl_url: String,
}

impl Profile {
    pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 60 * 60);
    pub const DEFAULT_BACKDATE: Duration = Duration::from_secs(60);

    /// A profile with the default 90-day validity and 1-minute backdate.
    pub fn new(aia_issuer_url: impl Into<String>, crl_url: impl Into<String>) -> Self {
        Self {
            validity: Self::DEFAULT_VALIDITY,
            backdate: Self::DEFAULT_BACKDATE,
            aia_issuer_url: aia_issuer_url.into(),
            crl_url: crl_url.into(),
        }
    }

    /// The AIA caIssuers (`{base}/ca/intermediate.der`) and CRL (`{base}/ca/crl`)
    /// URLs under `base_url`, over plain HTTP: the Baseline Requirements
    /// (7.1.2.7.7, 7.1.2.11.2) allow only `http://` there, since relying
    /// parties fetch them before they can check any TLS certificate. An
    /// `https://` base (the ACME URL) is turned into `http://` on the same
    /// authority.
    pub fn for_base_url(base_url: &str) -> Self {
        let base = base_url.trim_end_matches('/');
        let base = match base.get(..8) {
            Some(scheme) if scheme.eq_ignore_ascii_case("https://") => {
                format!("http://{}", &base[8..])
            }
            _ => base.to_string(),
        };
        Self::new(
            format!("{base}/ca/intermediate.der"),
            format!("{base}/ca/crl"),
        )
    }

    /// `(not_before, not_after)` in unix seconds for a certificate issued at
    /// `now`, using the full allowed validity period.
    pub fn validity_window(&self, now: i64) -> (i64, i64) {
        let not_before = now.saturating_sub(secs(self.backdate));
        (
            not_before,
            not_before.saturating_add(self.max_validity_secs() - 1),
        )
    }

    pub(super) fn max_validity_secs(&self) -> i64 {
        secs(self.validity)
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Subject key types a leaf may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafKeyType {
    Rsa { bits: u32 },
    P256,
    P384,
}

/// Classifies a subject public key, refusing anything outside RSA 2048–4096,
/// P-256 and P-384.
pub fn leaf_key_type<T: HasPublic>(key: &PKeyRef<T>) -> Result<LeafKeyType, CertError> {
    match key.id() {
        Id::RSA => match key.bits() {
            bits @ 2048..=4096 => Ok(LeafKeyType::Rsa { bits }),
            bits => Err(CertError::UnsupportedKey(format!("RSA-{bits}"))),
        },
        Id::EC => match key.ec_key()?.group().curve_name() {
            Some(Nid::X9_62_PRIME256V1) => Ok(LeafKeyType::P256),
            Some(Nid::SECP384R1) => Ok(LeafKeyType::P384),
            other => Err(CertError::UnsupportedKey(format!("EC curve {other:?}"))),
        },
        other => Err(CertError::UnsupportedKey(format!("key type {other:?}"))),
    }
}

fn is_ia5_url(url: &str) -> bool {
    !url.is_empty() && url.bytes().all(|b| b.is_ascii_graphic())
}

/// An IA5 `http://` URL with a host: the only kind the Baseline
/// Requirements allow for AIA caIssuers and CRL distribution points.
pub(super) fn is_http_url(url: &str) -> bool {
    is_ia5_url(url)
        && url.len() > "http://".len()
        && url[.."http://".len()].eq_ignore_ascii_case("http://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aia_and_crl_urls_are_plain_http() {
        let p = Profile::for_base_url("https://acme.example.com:8443/");
        assert_eq!(
            p.aia_issuer_url,
            "http://acme.example.com:8443/ca/intermediate.der"
        );
        assert_eq!(p.crl_url, "http://acme.example.com:8443/ca/crl");
        let p = Profile::for_base_url("HTTPS://ca.example");
        assert_eq!(p.crl_url, "http://ca.example/ca/crl");
        let p = Profile::for_base_url("http://ca.example/base");
        assert_eq!(
            p.aia_issuer_url,
            "http://ca.example/base/ca/intermediate.der"
        );
        assert!(is_http_url("http://a"));
        assert!(is_http_url("HTTP://a/b"));
        assert!(!is_http_url("http://"));
        assert!(!is_http_url("https://a"));
        assert!(!is_http_url("ldap://a"));
        assert!(!is_http_url("http://a b"));
    }
}
