//! Precertificates (RFC 6962 §3.1): the leaf Kiln issues for a request,
//! with the CT poison, assembled from a checked plan and linted before the
//! issuer key signs it.

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Public};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509Name};

use super::der::{
    AIA_OID, CERTIFICATE_POLICIES_OID, CRL_DP_OID, POISON_VALUE, aia_value, crl_dp_value,
    der_extension, policies_value,
};
use super::lint::lint_leaf;
use super::profile::{LeafKeyType, MAX_SERIAL_LEN, Profile, is_http_url, leaf_key_type};
use super::sign::sign_checked;
use super::{CT_POISON_OID, CertError};
use crate::ca::Issuer;

const MAX_CN_LEN: usize = 64;

/// Everything the signer needs to issue one leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafRequest {
    /// Big-endian positive serial, see [`crate::serial::new_serial`].
    pub serial: Vec<u8>,
    /// The order's identifiers, lowercase; may include `*.example.com`.
    pub dns_names: Vec<String>,
    /// SubjectPublicKeyInfo DER from the CSR.
    pub public_key_der: Vec<u8>,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
}

/// Precertificate (RFC 6962 §3.1): the leaf plus the critical CT poison
/// extension. Linted before the issuer key signs it.
pub fn build_precertificate(
    issuer: &Issuer,
    req: &LeafRequest,
    profile: &Profile,
) -> Result<X509, CertError> {
    let plan = LeafPlan::new(req, profile)?;
    sign_checked(
        issuer,
        || plan.assemble(issuer),
        |draft| Ok(lint_leaf(draft, &req.dns_names, profile)?),
    )
}

/// A validated request, ready to be assembled into a builder any number of times.
struct LeafPlan<'a> {
    serial: BigNum,
    names: Vec<&'a str>,
    subject: X509Name,
    empty_subject: bool,
    public_key: PKey<Public>,
    key_type: LeafKeyType,
    not_before: Asn1Time,
    not_after: Asn1Time,
    aia: Vec<u8>,
    crl_dp: Vec<u8>,
}

impl<'a> LeafPlan<'a> {
    fn new(req: &'a LeafRequest, profile: &Profile) -> Result<Self, CertError> {
        // BigNum would silently strip a leading zero, and a set top bit would
        // make the INTEGER negative; either way the certificate's serial would
        // differ from the one the caller recorded.
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
        if names.is_empty() {
            return Err(CertError::InvalidRequest("no DNS names".into()));
        }

        let public_key = PKey::public_key_from_der(&req.public_key_der)
            .map_err(|e| CertError::UnsupportedKey(format!("unparseable SPKI: {e}")))?;
        let key_type = leaf_key_type(&public_key)?;

        let mut subject = X509Name::builder()?;
        let common_name = common_name(&names);
        if let Some(cn) = common_name {
            subject.append_entry_by_nid(Nid::COMMONNAME, cn)?;
        }

        Ok(Self {
            serial: BigNum::from_slice(&req.serial)?,
            names,
            subject: subject.build(),
            empty_subject: common_name.is_none(),
            public_key,
            key_type,
            not_before: Asn1Time::from_unix(req.not_before)?,
            not_after: Asn1Time::from_unix(req.not_after)?,
            aia: aia_value(&profile.aia_issuer_url),
            crl_dp: crl_dp_value(&profile.crl_url),
        })
    }

    fn assemble(&self, issuer: &Issuer) -> Result<X509Builder, CertError> {
        let mut b = X509Builder::new()?;
        b.set_version(2)?;
        let serial = self.serial.to_asn1_integer()?;
        b.set_serial_number(&serial)?;
        b.set_issuer_name(issuer.cert.subject_name())?;
        b.set_subject_name(&self.subject)?;
        b.set_not_before(&self.not_before)?;
        b.set_not_after(&self.not_after)?;
        b.set_pubkey(&self.public_key)?;

        let mut key_usage = KeyUsage::new();
        key_usage.critical().digital_signature();
        if matches!(self.key_type, LeafKeyType::Rsa { .. }) {
            key_usage.key_encipherment();
        }
        let mut san = SubjectAlternativeName::new();
        if self.empty_subject {
            san.critical();
        }
        for name in &self.names {
            san.dns(name);
        }

        // The order here is the order in the certificate; the final
        // certificate relies on it staying put.
        let extensions = {
            let ctx = b.x509v3_context(Some(&issuer.cert), None);
            [
                key_usage.build()?,
                ExtendedKeyUsage::new().server_auth().build()?,
                BasicConstraints::new().critical().build()?,
                SubjectKeyIdentifier::new().build(&ctx)?,
                AuthorityKeyIdentifier::new().keyid(true).build(&ctx)?,
                der_extension(AIA_OID, false, &self.aia)?,
                san.build(&ctx)?,
                der_extension(CERTIFICATE_POLICIES_OID, false, &policies_value())?,
                der_extension(CRL_DP_OID, false, &self.crl_dp)?,
                der_extension(CT_POISON_OID, true, POISON_VALUE)?,
            ]
        };
        for extension in extensions {
            b.append_extension(extension)?;
        }
        Ok(b)
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
}
