//! Precertificates (RFC 6962 §3.1): the leaf Kiln issues for a request,
//! with the CT poison. Its TBSCertificate is written here in DER from a
//! checked plan, linted, and then exactly those bytes are signed.

use openssl::x509::X509;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::CertError;
use super::der::{
    POISON_VALUE, TAG_DNS_NAME, TAG_EXTENSIONS, TAG_INTEGER, TAG_IP_ADDRESS, TAG_OCTET_STRING,
    TAG_OID, TAG_SEQUENCE, TAG_SET, TAG_UTF8_STRING, TAG_VERSION, aia_value, crl_dp_value, der,
    extension, oid, policies_value, time,
};
use super::lint::lint_tbs;
use super::profile::{LeafKey, LeafKeyType, MAX_SERIAL_LEN, Profile, is_http_url};
use super::sign::IssuerSigner;
use crate::ca::Issuer;

const MAX_CN_LEN: usize = 64;

/// Everything the signer needs to issue one leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafRequest {
    /// Big-endian positive serial, see [`crate::serial::new_serial`].
    pub serial: Vec<u8>,
    /// The order's DNS identifiers, lowercase; may include `*.example.com`.
    pub dns_names: Vec<String>,
    /// The order's IP-address identifiers (RFC 8738): iPAddress SANs, never
    /// in the subject.
    pub ip_addresses: Vec<std::net::IpAddr>,
    /// SubjectPublicKeyInfo DER from the CSR.
    pub public_key_der: Vec<u8>,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
}

impl LeafRequest {
    /// Every SAN the leaf must carry, as the lint compares them: DNS names,
    /// then addresses in their text form.
    pub fn san_names(&self) -> Vec<String> {
        let addresses = self.ip_addresses.iter().map(|ip| ip.to_string());
        self.dns_names.iter().cloned().chain(addresses).collect()
    }
}

/// Precertificate (RFC 6962 §3.1) DER: the leaf plus the critical CT
/// poison extension. Its TBS is linted before the issuer key signs it, and
/// the signature is over the linted bytes themselves.
pub fn precertificate_der(
    issuer: &Issuer,
    req: &LeafRequest,
    profile: &Profile,
) -> Result<Vec<u8>, CertError> {
    let signer = issuer.signer();
    let tbs = LeafPlan::new(req, profile)?.tbs(signer);
    lint_tbs(&tbs, &req.san_names(), profile)?;
    signer.sign(&tbs)
}

/// [`precertificate_der`] as an OpenSSL certificate, for callers that want
/// one. Decoding costs more than building: the signer stage keeps the DER.
pub fn build_precertificate(
    issuer: &Issuer,
    req: &LeafRequest,
    profile: &Profile,
) -> Result<X509, CertError> {
    Ok(X509::from_der(&precertificate_der(issuer, req, profile)?)?)
}

/// A validated request, every field but the issuer's already in DER.
struct LeafPlan<'a> {
    serial: &'a [u8],
    names: Vec<&'a str>,
    addresses: Vec<std::net::IpAddr>,
    subject: Vec<u8>,
    empty_subject: bool,
    key: LeafKey,
    validity: Vec<u8>,
    aia: Vec<u8>,
    crl_dp: Vec<u8>,
}

impl<'a> LeafPlan<'a> {
    fn new(req: &'a LeafRequest, profile: &Profile) -> Result<Self, CertError> {
        // The serial is written as given: a leading zero would make it
        // non-minimal DER, and a set top bit a negative INTEGER.
        match req.serial.as_slice() {
            [first, ..] if (0x01..=0x7f).contains(first) && req.serial.len() <= MAX_SERIAL_LEN => {}
            _ => {
                return Err(CertError::InvalidRequest(
                    "serial must be 1-20 bytes, positive, minimally encoded".into(),
                ));
            }
        }
        if req.not_after <= req.not_before {
            return Err(CertError::InvalidRequest(
                "not_after must follow not_before".into(),
            ));
        }
        if !is_http_url(&profile.aia_issuer_url) {
            return Err(CertError::InvalidProfile(
                "aia_issuer_url must be an http:// URL",
            ));
        }
        if !is_http_url(&profile.crl_url) {
            return Err(CertError::InvalidProfile("crl_url must be an http:// URL"));
        }

        let mut names: Vec<&str> = Vec::with_capacity(req.dns_names.len());
        for name in &req.dns_names {
            if !is_dns_name(name) {
                return Err(CertError::InvalidRequest(format!("bad DNS name {name:?}")));
            }
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        let mut addresses = Vec::with_capacity(req.ip_addresses.len());
        for ip in &req.ip_addresses {
            if !addresses.contains(ip) {
                addresses.push(*ip);
            }
        }
        if names.is_empty() && addresses.is_empty() {
            return Err(CertError::InvalidRequest(
                "no DNS names or IP addresses".into(),
            ));
        }
        // An address is never a common name here (BR 7.1.4.3 would allow
        // one, in one spelling; leaving it out needs no spelling rules).
        if !addresses.is_empty() && profile.common_name {
            return Err(CertError::InvalidRequest(
                "IP addresses are issued only in a profile without a common name".into(),
            ));
        }

        let spki = match SubjectPublicKeyInfo::from_der(&req.public_key_der) {
            Ok(([], spki)) => spki,
            _ => return Err(CertError::UnsupportedKey("unparseable SPKI".into())),
        };
        let key = LeafKey::from_spki(&spki)?;
        // A key of an allowed type must also be a key (an EC point on its
        // curve): pkix builds it, without OpenSSL's slow decoder.
        // pkix's reason may be OpenSSL's text, which a client never sees.
        pkix::public_key(&spki).map_err(|e| {
            tracing::warn!(error = %e, "leaf key cannot be read");
            CertError::UnsupportedKey("the key cannot be read".into())
        })?;

        let common_name = common_name(&names).filter(|_| profile.common_name);
        let subject = match common_name {
            Some(cn) => {
                let attribute = [
                    der(TAG_OID, oid::COMMON_NAME),
                    der(TAG_UTF8_STRING, cn.as_bytes()),
                ];
                der(
                    TAG_SEQUENCE,
                    &der(TAG_SET, &der(TAG_SEQUENCE, &attribute.concat())),
                )
            }
            None => der(TAG_SEQUENCE, &[]),
        };
        let out_of_range = || CertError::InvalidRequest("validity out of range".into());
        let not_before = time(req.not_before).ok_or_else(out_of_range)?;
        let not_after = time(req.not_after).ok_or_else(out_of_range)?;

        Ok(Self {
            serial: &req.serial,
            names,
            addresses,
            subject,
            empty_subject: common_name.is_none(),
            key,
            validity: der(TAG_SEQUENCE, &[not_before, not_after].concat()),
            aia: aia_value(&profile.aia_issuer_url),
            crl_dp: crl_dp_value(&profile.crl_url),
        })
    }

    /// The TBSCertificate, byte for byte what OpenSSL's `X509Builder` made
    /// of the same leaf (tests/same_certificates.rs holds it to that).
    fn tbs(&self, issuer: &IssuerSigner) -> Vec<u8> {
        // KeyUsage BIT STRINGs: digitalSignature (7 unused bits), plus
        // keyEncipherment for RSA (5 unused bits).
        let key_usage: &[u8] = match self.key.key_type {
            LeafKeyType::Rsa { .. } => &[0x03, 0x02, 0x05, 0xa0],
            LeafKeyType::P256 | LeafKeyType::P384 => &[0x03, 0x02, 0x07, 0x80],
        };
        let dns_names = self
            .names
            .iter()
            .flat_map(|name| der(TAG_DNS_NAME, name.as_bytes()));
        // iPAddress [7] IMPLICIT OCTET STRING: 4 or 16 octets (RFC 5280).
        let addresses = self.addresses.iter().flat_map(|ip| match ip {
            std::net::IpAddr::V4(v4) => der(TAG_IP_ADDRESS, &v4.octets()),
            std::net::IpAddr::V6(v6) => der(TAG_IP_ADDRESS, &v6.octets()),
        });
        let san: Vec<u8> = dns_names.chain(addresses).collect();
        // RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits.
        let key_id = openssl::sha::sha1(&self.key.public_key);
        // The order here is the order in the certificate; the final
        // certificate relies on it staying put.
        let extensions = [
            extension(oid::KEY_USAGE, true, key_usage),
            extension(
                oid::EXT_KEY_USAGE,
                false,
                &der(TAG_SEQUENCE, &der(TAG_OID, oid::SERVER_AUTH)),
            ),
            // cA FALSE is the DEFAULT, so DER leaves it out.
            extension(oid::BASIC_CONSTRAINTS, true, &der(TAG_SEQUENCE, &[])),
            extension(oid::SUBJECT_KEY_ID, false, &der(TAG_OCTET_STRING, &key_id)),
            // [0] IMPLICIT KeyIdentifier
            extension(
                oid::AUTHORITY_KEY_ID,
                false,
                &der(TAG_SEQUENCE, &der(0x80, issuer.key_id())),
            ),
            extension(oid::AIA, false, &self.aia),
            extension(
                oid::SUBJECT_ALT_NAME,
                self.empty_subject,
                &der(TAG_SEQUENCE, &san),
            ),
            extension(oid::CERTIFICATE_POLICIES, false, &policies_value()),
            extension(oid::CRL_DP, false, &self.crl_dp),
            extension(oid::CT_POISON, true, POISON_VALUE),
        ]
        .concat();
        let fields = [
            &der(TAG_VERSION, &der(TAG_INTEGER, &[2]))[..], // v3
            &der(TAG_INTEGER, self.serial),
            issuer.algorithm(),
            issuer.name(),
            &self.validity,
            &self.subject,
            &self.key.spki_der(),
            &der(TAG_EXTENSIONS, &der(TAG_SEQUENCE, &extensions)),
        ]
        .concat();
        der(TAG_SEQUENCE, &fields)
    }
}

/// CN = the shortest non-wildcard name (any name if all are wildcards), or an
/// empty subject when that name does not fit the 64-character CN limit.
fn common_name<'n>(names: &[&'n str]) -> Option<&'n str> {
    let shortest = |wildcard: bool| {
        names
            .iter()
            .filter(move |n| n.starts_with("*.") == wildcard)
            .min_by_key(|n| n.len())
    };
    let pick = shortest(false).or_else(|| shortest(true))?;
    (pick.len() <= MAX_CN_LEN).then_some(*pick)
}

/// Syntax sanity only (policy lives in the API): lowercase LDH labels with an
/// optional leading `*.`.
fn is_dns_name(name: &str) -> bool {
    let host = name.strip_prefix("*.").unwrap_or(name);
    name.len() <= 253
        && !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_choice() {
        assert_eq!(
            common_name(&["www.example.com", "example.com"]),
            Some("example.com")
        );
        assert_eq!(common_name(&["*.a.io", "example.com"]), Some("example.com"));
        assert_eq!(common_name(&["*.example.com"]), Some("*.example.com"));
        let long = format!("{}.example.com", "a".repeat(60));
        assert_eq!(common_name(&[&long, "*.x.io"]), None);
    }

    #[test]
    fn dns_name_syntax() {
        assert!(is_dns_name("example.com"));
        assert!(is_dns_name("*.example.com"));
        assert!(!is_dns_name("Example.com"));
        assert!(!is_dns_name("a.*.example.com"));
        assert!(!is_dns_name("*."));
        assert!(!is_dns_name("-a.example.com"));
        assert!(!is_dns_name("a..b"));
    }

    /// A key of an allowed type that is no key is refused before anything
    /// is signed.
    #[test]
    fn keys_that_do_not_read_are_refused() {
        use openssl::ec::{EcGroup, EcKey};
        use openssl::pkey::PKey;
        let group = EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let spki = key.public_key_to_der().unwrap();
        let mut off_curve = spki.clone();
        *off_curve.last_mut().unwrap() ^= 1;
        let trailing = [spki.as_slice(), &[0]].concat();
        let profile = Profile::new("http://kiln.test/ca.der", "http://kiln.test/crl");
        for spki in [off_curve, trailing, b"junk".to_vec()] {
            let req = LeafRequest {
                serial: vec![0x01],
                dns_names: vec!["example.com".into()],
                ip_addresses: vec![],
                public_key_der: spki,
                not_before: 1_700_000_000,
                not_after: 1_700_086_400,
            };
            assert!(matches!(
                LeafPlan::new(&req, &profile),
                Err(CertError::UnsupportedKey(_))
            ));
        }
    }
}
