//! What Kiln issues: validity, the AIA and CRL URLs, and the subject key
//! types a leaf may carry (and how a leaf writes them).

use std::time::Duration;

use x509_parser::oid_registry::{OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::CertError;
use super::der::{
    TAG_BIT_STRING, TAG_OID, TAG_SEQUENCE, algorithm_identifier, der, oid, unsigned_integer,
};

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
    /// The CRL Distribution Point a leaf carries. A deployment's profile
    /// (`for_base_url`) holds the directory of its shards' CRLs
    /// (`{base}/crl`); each leaf carries its own shard's URL under it
    /// ([`Profile::for_crl_shard`]).
    pub crl_url: String,
    /// Whether the subject carries a common name (the first name that fits
    /// in one); without, the subject is empty and the SAN critical.
    pub common_name: bool,
    /// What the operator changed of the order profiles (`[signer.profiles]`).
    pub order_profiles: OrderProfiles,
}

/// What an operator may set of one certificate profile
/// (`[signer.profiles.NAME]`); unset keys keep the profile's own.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSettings {
    /// The lifetime, inclusive as RFC 5280 counts it.
    pub validity_secs: Option<u64>,
    /// Whether the subject carries a common name.
    pub common_name: Option<bool>,
}

/// `[signer.profiles]`: the settings of each profile the directory offers.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderProfiles {
    #[serde(default)]
    pub classic: ProfileSettings,
    #[serde(default)]
    pub tlsserver: ProfileSettings,
    #[serde(default)]
    pub shortlived: ProfileSettings,
}

/// BR 6.3.2: a subscriber certificate issued from 2026-03-15 lives at most
/// 200 days (ballot SC-081; 100 from 2027-03-15).
pub const MAX_LEAF_VALIDITY_SECS: u64 = 200 * 86_400;

impl OrderProfiles {
    pub fn get(&self, profile: domain::CertificateProfile) -> &ProfileSettings {
        match profile {
            domain::CertificateProfile::Classic => &self.classic,
            domain::CertificateProfile::TlsServer => &self.tlsserver,
            domain::CertificateProfile::ShortLived => &self.shortlived,
        }
    }

    /// Refuses a lifetime the BRs do not allow, and a common name in the
    /// profile that certifies IP addresses (which never go in a CN here).
    pub fn check(&self) -> Result<(), String> {
        for profile in domain::CertificateProfile::ALL {
            let settings = self.get(profile);
            if let Some(secs) = settings.validity_secs
                && !(3600..=MAX_LEAF_VALIDITY_SECS).contains(&secs)
            {
                return Err(format!(
                    "profiles.{profile}.validity_secs must be 3600..={MAX_LEAF_VALIDITY_SECS} \
                     (BR 6.3.2: at most 200 days), not {secs}"
                ));
            }
            if profile.allows_ip_identifiers() && settings.common_name == Some(true) {
                return Err(format!(
                    "profiles.{profile}.common_name cannot be true: the profile certifies IP \
                     addresses, which never go in a common name"
                ));
            }
        }
        Ok(())
    }
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
            common_name: true,
            order_profiles: OrderProfiles::default(),
        }
    }

    /// This deployment's profile as an order's certificate profile asks:
    /// the operator's settings for it (`[signer.profiles]`), else the
    /// profile's own validity where it has one (`tlsserver`, `shortlived`)
    /// and this one's otherwise (`classic`), and a common name only in
    /// `classic`. The CT policy follows by itself: it counts SCTs by the
    /// lifetime.
    pub fn for_order(&self, profile: domain::CertificateProfile) -> Profile {
        let settings = self.order_profiles.get(profile);
        let validity = settings
            .validity_secs
            .map(Duration::from_secs)
            .or(profile.validity())
            .unwrap_or(self.validity);
        Profile {
            validity,
            common_name: settings.common_name.unwrap_or(profile.common_name()),
            ..self.clone()
        }
    }

    /// This profile for a leaf listed by the CRL named `name` (a
    /// [`store::crl_name`]): its CRL DP is `{crl_url}/{name}`, where the
    /// public HTTP listener serves that CRL.
    pub fn for_crl_shard(&self, name: &str) -> Profile {
        Profile {
            crl_url: format!("{}/{name}", self.crl_url.trim_end_matches('/')),
            ..self.clone()
        }
    }

    /// The AIA caIssuers (`{base}/ca/intermediate.der`) and CRL shards'
    /// (`{base}/crl`) URLs under `base_url`, over plain HTTP: the Baseline Requirements
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
            format!("{base}{}", store::CRL_PATH.trim_end_matches('/')),
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

/// A subject key the profile allows, classified on its parsed
/// SubjectPublicKeyInfo (RSA 2048–8192, P-256, P-384; nothing else, and an
/// EC point of its curve's size). Whether the point lies on the curve is
/// checked where a key enters, from the CSR (pkix), not here.
pub(super) struct LeafKey {
    pub(super) key_type: LeafKeyType,
    /// The subjectPublicKey bits as a leaf carries them: the EC point as the
    /// key's owner encoded it (OpenSSL keeps the form too), or the RSA key as
    /// a minimal DER RSAPublicKey.
    pub(super) public_key: Vec<u8>,
}

impl LeafKey {
    pub(super) fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<Self, CertError> {
        let algorithm = &spki.algorithm.algorithm;
        if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = pkix::Curve::of(spki).map_err(|curve| {
                CertError::UnsupportedKey(match curve {
                    Some(oid) => format!("EC curve {oid}"),
                    None => "EC key without a named curve".into(),
                })
            })?;
            let key_type = match curve {
                pkix::Curve::P256 => LeafKeyType::P256,
                pkix::Curve::P384 => LeafKeyType::P384,
            };
            let field_len = curve.field_len();
            let point = spki.subject_public_key.data.as_ref();
            // Uncompressed or compressed (SEC 1 §2.3.3); not the point at
            // infinity (a single zero octet), which OpenSSL reads as a point
            // "on" every curve, nor the hybrid form.
            match point {
                [0x04, xy @ ..] if xy.len() == 2 * field_len => {}
                [0x02 | 0x03, x @ ..] if x.len() == field_len => {}
                _ => {
                    return Err(CertError::UnsupportedKey(
                        "EC point neither compressed nor uncompressed for its curve".into(),
                    ));
                }
            }
            Ok(Self {
                key_type,
                public_key: point.to_vec(),
            })
        } else if *algorithm == OID_PKCS1_RSAENCRYPTION {
            let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
                return Err(CertError::UnsupportedKey("unparseable RSA key".into()));
            };
            let bits = rsa_bits(rsa.modulus);
            // The api's CSR rule (`pkix::RSA_BITS`), so that no key it
            // accepted at finalize is refused here, after `processing`.
            if !pkix::RSA_BITS.contains(&bits) {
                return Err(CertError::UnsupportedKey(format!("RSA-{bits}")));
            }
            let rsa_public_key = [
                unsigned_integer(rsa.modulus),
                unsigned_integer(rsa.exponent),
            ]
            .concat();
            Ok(Self {
                key_type: LeafKeyType::Rsa { bits },
                public_key: der(TAG_SEQUENCE, &rsa_public_key),
            })
        } else {
            Err(CertError::UnsupportedKey(format!("key type {algorithm}")))
        }
    }

    /// The SubjectPublicKeyInfo, byte for byte as OpenSSL encodes this key.
    pub(super) fn spki_der(&self) -> Vec<u8> {
        let algorithm = match self.key_type {
            LeafKeyType::Rsa { .. } => algorithm_identifier(oid::RSA_ENCRYPTION),
            LeafKeyType::P256 => ec_algorithm(oid::P256),
            LeafKeyType::P384 => ec_algorithm(oid::P384),
        };
        let mut bits = Vec::with_capacity(self.public_key.len() + 1);
        bits.push(0); // no unused bits
        bits.extend_from_slice(&self.public_key);
        der(
            TAG_SEQUENCE,
            &[algorithm, der(TAG_BIT_STRING, &bits)].concat(),
        )
    }
}

fn ec_algorithm(curve: &[u8]) -> Vec<u8> {
    der(
        TAG_SEQUENCE,
        &[der(TAG_OID, oid::EC_PUBLIC_KEY), der(TAG_OID, curve)].concat(),
    )
}

/// The bit length of a big-endian modulus, as OpenSSL counts it.
fn rsa_bits(modulus: &[u8]) -> u32 {
    let zeros = modulus.iter().take_while(|&&b| b == 0).count();
    match modulus[zeros..].first() {
        None => 0,
        Some(top) => (modulus.len() - zeros) as u32 * 8 - top.leading_zeros(),
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
        assert_eq!(p.crl_url, "http://acme.example.com:8443/crl");
        let p = Profile::for_base_url("HTTPS://ca.example");
        assert_eq!(p.crl_url, "http://ca.example/crl");
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

    fn spki(der: &[u8]) -> SubjectPublicKeyInfo<'_> {
        use x509_parser::prelude::FromDer;
        SubjectPublicKeyInfo::from_der(der).unwrap().1
    }

    fn ec(nid: openssl::nid::Nid) -> Vec<u8> {
        use openssl::ec::{EcGroup, EcKey};
        let group = EcGroup::from_curve_name(nid).unwrap();
        let key = openssl::pkey::PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        key.public_key_to_der().unwrap()
    }

    fn rsa(bits: u32) -> Vec<u8> {
        let key = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(bits).unwrap());
        key.unwrap().public_key_to_der().unwrap()
    }

    /// The profile's key types, classified as OpenSSL would, and written
    /// back exactly as OpenSSL encodes them.
    #[test]
    fn leaf_keys() {
        use openssl::nid::Nid;
        for (der, key_type) in [
            (ec(Nid::X9_62_PRIME256V1), LeafKeyType::P256),
            (ec(Nid::SECP384R1), LeafKeyType::P384),
            (rsa(2048), LeafKeyType::Rsa { bits: 2048 }),
            (rsa(3072), LeafKeyType::Rsa { bits: 3072 }),
        ] {
            let key = LeafKey::from_spki(&spki(&der)).unwrap();
            assert_eq!(key.key_type, key_type);
            assert_eq!(key.spki_der(), der, "{key_type:?}");
        }
        let ed25519 = openssl::pkey::PKey::generate_ed25519().unwrap();
        for der in [
            rsa(1024),
            ec(Nid::SECP521R1),
            ed25519.public_key_to_der().unwrap(),
        ] {
            assert!(matches!(
                LeafKey::from_spki(&spki(&der)),
                Err(CertError::UnsupportedKey(_))
            ));
        }
        // A P-256 SPKI whose point is the point at infinity, then a hybrid one.
        let p256 = ec(Nid::X9_62_PRIME256V1);
        let alg = &p256[2..23];
        assert_eq!(
            p256[26], 0x04,
            "uncompressed point after the BIT STRING header"
        );
        for point in [vec![0x00], [&[0x06][..], &p256[27..]].concat()] {
            let bits = [vec![0x03, point.len() as u8 + 1, 0x00], point].concat();
            let der = [
                vec![0x30, (alg.len() + bits.len()) as u8],
                alg.to_vec(),
                bits,
            ]
            .concat();
            assert!(matches!(
                LeafKey::from_spki(&spki(&der)),
                Err(CertError::UnsupportedKey(_))
            ));
        }
        assert_eq!(rsa_bits(&[0x00, 0x80, 0]), 16);
        assert_eq!(rsa_bits(&[0x7f, 0]), 15);
        assert_eq!(rsa_bits(&[0, 0]), 0);
    }
}
