//! Leaf certificate issuance: precertificates, final certificates and the
//! pre-signing lint.
//!
//! Every certificate is assembled twice: first signed with a throwaway key and
//! linted, then signed with the real issuer key. The real signature is only
//! returned if its TBSCertificate is byte-identical to the linted one, so the
//! CA key never signs anything that was not checked.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::EcKey;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, Id, PKey, PKeyRef, Private, Public};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509Extension, X509Name};
use x509_parser::certificate::{Validity, X509Certificate};
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::oid_registry::{OID_PKIX_ACCESS_DESCRIPTOR_CA_ISSUERS, OID_X509_COMMON_NAME};
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Version;

use crate::ca::Issuer;

/// RFC 6962 §3.1 precertificate poison extension.
pub const CT_POISON_OID: &str = "1.3.6.1.4.1.11129.2.4.3";
/// RFC 6962 §3.3 embedded SCT list extension.
pub const CT_SCT_LIST_OID: &str = "1.3.6.1.4.1.11129.2.4.2";
/// CA/B Forum domain-validated policy.
pub const DV_POLICY_OID: &str = "2.23.140.1.2.1";

// Extensions without a typed openssl builder, encoded by hand below.
const AIA_OID: &str = "1.3.6.1.5.5.7.1.1";
const CERTIFICATE_POLICIES_OID: &str = "2.5.29.32";
const CRL_DP_OID: &str = "2.5.29.31";

/// DER content octets of the OIDs above, for matching inside raw TBS bytes.
const CT_POISON_OID_DER: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x03];
const CT_SCT_LIST_OID_DER: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x02];
/// Full TLVs (tag 06) embedded in hand-encoded extension values.
const CA_ISSUERS_OID_TLV: &[u8] = &[0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02];
const DV_POLICY_OID_TLV: &[u8] = &[0x06, 0x06, 0x67, 0x81, 0x0c, 0x01, 0x02, 0x01];
/// The poison's extnValue: an ASN.1 NULL.
const POISON_VALUE: &[u8] = &[0x05, 0x00];

const MAX_SERIAL_LEN: usize = 20;
const MAX_CN_LEN: usize = 64;

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

    fn max_validity_secs(&self) -> i64 {
        secs(self.validity)
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

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

/// Subject key types a leaf may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafKeyType {
    Rsa { bits: u32 },
    P256,
    P384,
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("unsupported public key: {0}")]
    UnsupportedKey(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("invalid profile: {0}")]
    InvalidProfile(&'static str),
    #[error("unsupported issuer key type")]
    UnsupportedIssuerKey,
    #[error("precertificate rejected: {0}")]
    BadPrecertificate(&'static str),
    #[error("malformed SCT list extension value: {0}")]
    BadSctList(&'static str),
    #[error("lint failed: {0}")]
    Lint(#[from] LintError),
    #[error("certificate does not parse: {0}")]
    Parse(String),
    #[error("internal consistency check failed: {0}")]
    Internal(&'static str),
    #[error("openssl: {0}")]
    OpenSsl(#[from] ErrorStack),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LintError {
    #[error("certificate does not parse: {0}")]
    Unparseable(String),
    #[error("validity period of {actual_secs}s exceeds the profile maximum of {max_secs}s")]
    ValidityTooLong { actual_secs: i64, max_secs: i64 },
    #[error("SAN does not match the requested names (missing {missing:?}, extra {extra:?})")]
    SanMismatch {
        missing: Vec<String>,
        extra: Vec<String>,
    },
    #[error("missing required extension {0}")]
    MissingExtension(&'static str),
    #[error("{field}: {reason}")]
    Violation { field: &'static str, reason: String },
}

fn violation(field: &'static str, reason: impl Into<String>) -> LintError {
    LintError::Violation {
        field,
        reason: reason.into(),
    }
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

/// Final certificate: the precertificate's TBS with the poison replaced, at
/// the same index, by the SCT list extension (`sct_list_ext_der` is the
/// extnValue contents: an OCTET STRING wrapping the TLS-encoded SCT list).
///
/// Everything is copied from the precertificate, not rebuilt from the request,
/// so the only possible difference is the swapped extension; that invariant is
/// checked on the DER before the issuer key signs. No profile lint is rerun:
/// the precertificate was linted before this issuer signed it, and we only
/// accept precertificates carrying this issuer's signature.
pub fn build_final_certificate(
    issuer: &Issuer,
    precert_der: &[u8],
    sct_list_ext_der: &[u8],
) -> Result<X509, CertError> {
    check_sct_list_ext(sct_list_ext_der)?;

    let precert = X509::from_der(precert_der)?;
    let issuer_public_key = issuer.cert.public_key()?;
    if !precert.verify(&issuer_public_key)? {
        return Err(CertError::BadPrecertificate("not signed by this issuer"));
    }
    let parsed = parse_cert(precert_der).map_err(CertError::Parse)?;
    let tbs = &parsed.tbs_certificate;
    if tbs.version != X509Version::V3 || tbs.issuer_uid.is_some() || tbs.subject_uid.is_some() {
        return Err(CertError::BadPrecertificate(
            "unexpected version or unique identifiers",
        ));
    }
    let poisons: Vec<_> = tbs
        .extensions()
        .iter()
        .filter(|e| e.oid.to_id_string() == CT_POISON_OID)
        .collect();
    match poisons.as_slice() {
        [p] if p.critical && p.value == POISON_VALUE => {}
        _ => {
            return Err(CertError::BadPrecertificate(
                "needs exactly one critical poison extension",
            ));
        }
    }

    let extensions = tbs
        .extensions()
        .iter()
        .map(|ext| {
            let oid = ext.oid.to_id_string();
            if oid == CT_POISON_OID {
                der_extension(CT_SCT_LIST_OID, false, sct_list_ext_der)
            } else {
                der_extension(&oid, ext.critical, ext.value)
            }
        })
        .collect::<Result<Vec<_>, ErrorStack>>()?;
    let public_key = precert.public_key()?;

    let assemble = || -> Result<X509Builder, CertError> {
        let mut b = X509Builder::new()?;
        b.set_version(2)?;
        b.set_serial_number(precert.serial_number())?;
        b.set_issuer_name(precert.issuer_name())?;
        b.set_subject_name(precert.subject_name())?;
        b.set_not_before(precert.not_before())?;
        b.set_not_after(precert.not_after())?;
        b.set_pubkey(&public_key)?;
        for ext in &extensions {
            b.append_extension2(ext)?;
        }
        Ok(b)
    };
    let check = |draft: &[u8]| -> Result<(), CertError> {
        let (pre_tbs, poison_at) = tbs_without_extension(precert_der, CT_POISON_OID_DER)?;
        let (final_tbs, sct_at) = tbs_without_extension(draft, CT_SCT_LIST_OID_DER)?;
        let (_, final_poison) = tbs_without_extension(draft, CT_POISON_OID_DER)?;
        if poison_at.is_none() || poison_at != sct_at || final_poison.is_some() {
            return Err(CertError::Internal("SCT list not at the poison's position"));
        }
        if pre_tbs != final_tbs {
            return Err(CertError::Internal(
                "final TBS differs from precertificate TBS",
            ));
        }
        Ok(())
    };
    sign_checked(issuer, assemble, check)
}

/// Checks a leaf (precertificate or final) against Kiln's profile. Run by the
/// builders before the issuer key signs; also usable on any issued DER.
pub fn lint_leaf(
    cert_der: &[u8],
    expected_names: &[String],
    profile: &Profile,
) -> Result<(), LintError> {
    let cert = parse_cert(cert_der).map_err(LintError::Unparseable)?;
    let tbs = &cert.tbs_certificate;

    if tbs.version != X509Version::V3 {
        return Err(violation("version", "must be v3"));
    }
    lint_serial(tbs.raw_serial())?;
    lint_validity(&tbs.validity, profile)?;
    let key = PKey::public_key_from_der(tbs.subject_pki.raw)
        .map_err(|e| violation("subjectPublicKeyInfo", e.to_string()))?;
    let key_type =
        leaf_key_type(&key).map_err(|e| violation("subjectPublicKeyInfo", e.to_string()))?;

    let mut seen = HashSet::new();
    let mut present = HashSet::new();
    let mut san_names: Option<(bool, Vec<String>)> = None;
    for ext in tbs.extensions() {
        let oid = ext.oid.to_id_string();
        if !seen.insert(oid.clone()) {
            return Err(violation("extensions", format!("duplicate {oid}")));
        }
        let name = match ext.parsed_extension() {
            ParsedExtension::KeyUsage(ku) => {
                require_critical("keyUsage", ext.critical, true)?;
                if !ku.digital_signature() {
                    return Err(violation("keyUsage", "digitalSignature missing"));
                }
                if ku.key_encipherment() && !matches!(key_type, LeafKeyType::Rsa { .. }) {
                    return Err(violation("keyUsage", "keyEncipherment on a non-RSA key"));
                }
                if ku.non_repudiation()
                    || ku.data_encipherment()
                    || ku.key_agreement()
                    || ku.key_cert_sign()
                    || ku.crl_sign()
                    || ku.encipher_only()
                    || ku.decipher_only()
                {
                    return Err(violation("keyUsage", "unexpected usage bits"));
                }
                "keyUsage"
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                require_critical("extKeyUsage", ext.critical, false)?;
                if !eku.server_auth {
                    return Err(violation("extKeyUsage", "serverAuth missing"));
                }
                if eku.any
                    || eku.code_signing
                    || eku.email_protection
                    || eku.time_stamping
                    || eku.ocsp_signing
                    || !eku.other.is_empty()
                {
                    return Err(violation(
                        "extKeyUsage",
                        "only serverAuth/clientAuth allowed",
                    ));
                }
                "extKeyUsage"
            }
            ParsedExtension::BasicConstraints(bc) => {
                require_critical("basicConstraints", ext.critical, true)?;
                if bc.ca || bc.path_len_constraint.is_some() {
                    return Err(violation("basicConstraints", "must be CA:FALSE"));
                }
                "basicConstraints"
            }
            ParsedExtension::SubjectKeyIdentifier(ski) => {
                require_critical("subjectKeyIdentifier", ext.critical, false)?;
                // RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits.
                let expected = openssl::sha::sha1(tbs.subject_pki.subject_public_key.as_ref());
                if ski.0 != expected.as_slice() {
                    return Err(violation("subjectKeyIdentifier", "not SHA-1 of the key"));
                }
                "subjectKeyIdentifier"
            }
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                require_critical("authorityKeyIdentifier", ext.critical, false)?;
                if aki.key_identifier.is_none() {
                    return Err(violation("authorityKeyIdentifier", "keyIdentifier missing"));
                }
                "authorityKeyIdentifier"
            }
            ParsedExtension::AuthorityInfoAccess(aia) => {
                require_critical("authorityInfoAccess", ext.critical, false)?;
                let has_issuer_url = aia.accessdescs.iter().any(|d| {
                    d.access_method == OID_PKIX_ACCESS_DESCRIPTOR_CA_ISSUERS
                        && d.access_location == GeneralName::URI(&profile.aia_issuer_url)
                });
                if !has_issuer_url {
                    return Err(violation("authorityInfoAccess", "caIssuers URL missing"));
                }
                if !aia
                    .accessdescs
                    .iter()
                    .all(|d| matches!(d.access_location, GeneralName::URI(u) if is_http_url(u)))
                {
                    return Err(violation(
                        "authorityInfoAccess",
                        "access locations must be http:// URLs",
                    ));
                }
                "authorityInfoAccess"
            }
            ParsedExtension::SubjectAlternativeName(san) => {
                let names = san
                    .general_names
                    .iter()
                    .map(|gn| match gn {
                        GeneralName::DNSName(n) => Ok((*n).to_owned()),
                        other => Err(violation(
                            "subjectAltName",
                            format!("non-DNS name {other:?}"),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                san_names = Some((ext.critical, names));
                "subjectAltName"
            }
            ParsedExtension::CertificatePolicies(policies) => {
                require_critical("certificatePolicies", ext.critical, false)?;
                if !policies
                    .iter()
                    .any(|p| p.policy_id.to_id_string() == DV_POLICY_OID)
                {
                    return Err(violation("certificatePolicies", "DV policy missing"));
                }
                "certificatePolicies"
            }
            ParsedExtension::CRLDistributionPoints(points) => {
                require_critical("crlDistributionPoints", ext.critical, false)?;
                let has_url = points.iter().any(|p| match &p.distribution_point {
                    Some(DistributionPointName::FullName(names)) => {
                        names.contains(&GeneralName::URI(&profile.crl_url))
                    }
                    _ => false,
                });
                if !has_url {
                    return Err(violation("crlDistributionPoints", "CRL URL missing"));
                }
                let all_http = points.iter().all(|p| match &p.distribution_point {
                    Some(DistributionPointName::FullName(names)) => names
                        .iter()
                        .all(|n| matches!(n, GeneralName::URI(u) if is_http_url(u))),
                    _ => false,
                });
                if !all_http {
                    return Err(violation(
                        "crlDistributionPoints",
                        "distribution points must be http:// URLs",
                    ));
                }
                "crlDistributionPoints"
            }
            // The SCT list's contents are the CT submitter's business; only
            // its placement is checked here.
            _ if oid == CT_SCT_LIST_OID => {
                require_critical("sctList", ext.critical, false)?;
                "sctList"
            }
            ParsedExtension::UnsupportedExtension { .. } if oid == CT_POISON_OID => {
                if !ext.critical || ext.value != POISON_VALUE {
                    return Err(violation("ctPoison", "must be critical NULL"));
                }
                "ctPoison"
            }
            ParsedExtension::ParseError { error } => {
                return Err(violation("extensions", format!("{oid} malformed: {error}")));
            }
            _ => return Err(violation("extensions", format!("unexpected {oid}"))),
        };
        present.insert(name);
    }

    for required in [
        "keyUsage",
        "extKeyUsage",
        "basicConstraints",
        "subjectKeyIdentifier",
        "authorityKeyIdentifier",
        "authorityInfoAccess",
        "subjectAltName",
        "certificatePolicies",
        "crlDistributionPoints",
    ] {
        if !present.contains(required) {
            return Err(LintError::MissingExtension(required));
        }
    }
    if present.contains("ctPoison") && present.contains("sctList") {
        return Err(violation("extensions", "both CT poison and SCT list"));
    }

    let (san_critical, names) = san_names.ok_or(LintError::MissingExtension("subjectAltName"))?;
    lint_san(&names, expected_names)?;
    lint_subject(&cert, &names, san_critical)
}

fn require_critical(field: &'static str, actual: bool, expected: bool) -> Result<(), LintError> {
    if actual == expected {
        Ok(())
    } else if expected {
        Err(violation(field, "must be critical"))
    } else {
        Err(violation(field, "must not be critical"))
    }
}

fn lint_serial(raw: &[u8]) -> Result<(), LintError> {
    match raw {
        [] => Err(violation("serialNumber", "empty")),
        r if r.len() > MAX_SERIAL_LEN => Err(violation("serialNumber", "longer than 20 bytes")),
        [first, ..] if first & 0x80 != 0 => Err(violation("serialNumber", "negative")),
        r if r.iter().all(|&b| b == 0) => Err(violation("serialNumber", "zero")),
        _ => Ok(()),
    }
}

fn lint_validity(validity: &Validity, profile: &Profile) -> Result<(), LintError> {
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    if not_after < not_before {
        return Err(violation("validity", "notAfter before notBefore"));
    }
    // RFC 5280 validity includes both endpoints.
    let actual_secs = not_after - not_before + 1;
    let max_secs = profile.max_validity_secs();
    if actual_secs > max_secs {
        return Err(LintError::ValidityTooLong {
            actual_secs,
            max_secs,
        });
    }
    Ok(())
}

fn lint_san(names: &[String], expected: &[String]) -> Result<(), LintError> {
    let actual: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let expected: BTreeSet<String> = expected.iter().map(|n| n.to_ascii_lowercase()).collect();
    let expected: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    if actual != expected {
        return Err(LintError::SanMismatch {
            missing: expected
                .difference(&actual)
                .map(|s| s.to_string())
                .collect(),
            extra: actual
                .difference(&expected)
                .map(|s| s.to_string())
                .collect(),
        });
    }
    if names.len() != actual.len() {
        return Err(violation("subjectAltName", "duplicate names"));
    }
    Ok(())
}

fn lint_subject(
    cert: &X509Certificate<'_>,
    san_names: &[String],
    san_critical: bool,
) -> Result<(), LintError> {
    let attributes: Vec<_> = cert.subject().iter_attributes().collect();
    match attributes.as_slice() {
        // RFC 5280 §4.2.1.6: an empty subject requires a critical SAN.
        [] if !san_critical => Err(violation(
            "subjectAltName",
            "must be critical when subject is empty",
        )),
        [] => Ok(()),
        [_] if san_critical => Err(violation("subjectAltName", "must not be critical")),
        [cn] if *cn.attr_type() == OID_X509_COMMON_NAME => {
            let value = cn
                .as_str()
                .map_err(|e| violation("subject", format!("CN not a string: {e}")))?;
            if san_names.iter().any(|n| n == value) {
                Ok(())
            } else {
                Err(violation("subject", "CN is not one of the SAN names"))
            }
        }
        _ => Err(violation("subject", "only a single CN is allowed")),
    }
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

fn is_ia5_url(url: &str) -> bool {
    !url.is_empty() && url.bytes().all(|b| b.is_ascii_graphic())
}

/// An IA5 `http://` URL with a host: the only kind the Baseline
/// Requirements allow for AIA caIssuers and CRL distribution points.
fn is_http_url(url: &str) -> bool {
    is_ia5_url(url)
        && url.len() > "http://".len()
        && url[.."http://".len()].eq_ignore_ascii_case("http://")
}

/// Signs twice: with a throwaway key for linting, then with the issuer key;
/// returns the real certificate only if its TBS is exactly what was checked.
fn sign_checked(
    issuer: &Issuer,
    assemble: impl Fn() -> Result<X509Builder, CertError>,
    check: impl Fn(&[u8]) -> Result<(), CertError>,
) -> Result<X509, CertError> {
    let lint_key = throwaway_key_like(&issuer.key)?;
    let mut draft = assemble()?;
    draft.sign(&lint_key, MessageDigest::sha256())?;
    let draft = draft.build().to_der()?;
    check(&draft)?;

    let mut real = assemble()?;
    real.sign(&issuer.key, MessageDigest::sha256())?;
    let cert = real.build();
    let cert_der = cert.to_der()?;
    if tbs_bytes(&cert_der)? != tbs_bytes(&draft)? {
        return Err(CertError::Internal("signed TBS differs from linted TBS"));
    }
    // Catches an issuer key that does not belong to the issuer certificate.
    let issuer_public_key = issuer.cert.public_key()?;
    if !cert.verify(&issuer_public_key)? {
        return Err(CertError::Internal(
            "signature does not verify under issuer certificate",
        ));
    }
    Ok(cert)
}

/// Same algorithm and size as the issuer key, so the draft's signature
/// AlgorithmIdentifier (part of the TBS) matches the real one.
fn throwaway_key_like(key: &PKeyRef<Private>) -> Result<PKey<Private>, CertError> {
    match key.id() {
        Id::EC => Ok(PKey::from_ec_key(EcKey::generate(key.ec_key()?.group())?)?),
        Id::RSA => Ok(PKey::from_rsa(Rsa::generate(key.bits())?)?),
        _ => Err(CertError::UnsupportedIssuerKey),
    }
}

fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err("trailing data after certificate".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The TBSCertificate TLV of a certificate.
fn tbs_bytes(cert_der: &[u8]) -> Result<&[u8], CertError> {
    der_split(cert_der)
        .and_then(|cert| der_split(cert.content))
        .map(|tbs| tbs.whole)
        .ok_or_else(|| CertError::Parse("malformed certificate DER".into()))
}

/// Checks the SCT list extnValue: a DER OCTET STRING holding a TLS
/// `SignedCertificateTimestampList` (u16 length, then u16-length-prefixed SCTs).
fn check_sct_list_ext(der: &[u8]) -> Result<(), CertError> {
    let (rest, list) =
        <&[u8]>::from_der(der).map_err(|_| CertError::BadSctList("not a DER OCTET STRING"))?;
    if !rest.is_empty() {
        return Err(CertError::BadSctList("trailing data"));
    }
    let (len, mut scts) = split_u16(list).ok_or(CertError::BadSctList("truncated"))?;
    if len != scts.len() || scts.is_empty() {
        return Err(CertError::BadSctList("list length mismatch or empty"));
    }
    while !scts.is_empty() {
        let (sct_len, rest) = split_u16(scts).ok_or(CertError::BadSctList("truncated"))?;
        if sct_len == 0 || sct_len > rest.len() {
            return Err(CertError::BadSctList("SCT length out of range"));
        }
        scts = &rest[sct_len..];
    }
    Ok(())
}

fn split_u16(b: &[u8]) -> Option<(usize, &[u8])> {
    match b {
        [hi, lo, rest @ ..] => Some((usize::from(u16::from_be_bytes([*hi, *lo])), rest)),
        _ => None,
    }
}

/// An extension from its OID and raw extnValue contents.
fn der_extension(oid: &str, critical: bool, value: &[u8]) -> Result<X509Extension, ErrorStack> {
    let oid = Asn1Object::from_str(oid)?;
    let value = Asn1OctetString::new_from_bytes(value)?;
    X509Extension::new_from_der(&oid, critical, &value)
}

/// `AuthorityInfoAccessSyntax` with a single caIssuers URI.
fn aia_value(url: &str) -> Vec<u8> {
    let access_description = [CA_ISSUERS_OID_TLV, &der(0x86, url.as_bytes())].concat();
    der(0x30, &der(0x30, &access_description))
}

/// `CRLDistributionPoints` with one point whose fullName is a single URI.
fn crl_dp_value(url: &str) -> Vec<u8> {
    let full_name = der(0xa0, &der(0x86, url.as_bytes()));
    der(0x30, &der(0x30, &der(0xa0, &full_name)))
}

/// `CertificatePolicies` with only the CA/B DV policy, no qualifiers.
fn policies_value() -> Vec<u8> {
    der(0x30, &der(0x30, DV_POLICY_OID_TLV))
}

/// Encodes one DER TLV (single-byte tag).
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// One DER TLV split off the front of a buffer.
struct Tlv<'a> {
    tag: u8,
    /// Header and content.
    whole: &'a [u8],
    content: &'a [u8],
    /// What follows the TLV.
    rest: &'a [u8],
}

fn der_split(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, after_tag) = input.split_first()?;
    let (&first, after_first) = after_tag.split_first()?;
    let (len, body) = if first < 0x80 {
        (usize::from(first), after_first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || after_first.len() < n {
            return None;
        }
        let len = after_first[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &after_first[n..])
    };
    if body.len() < len {
        return None;
    }
    let header = input.len() - body.len();
    Some(Tlv {
        tag,
        whole: &input[..header + len],
        content: &body[..len],
        rest: &body[len..],
    })
}

/// Re-encodes the certificate's TBSCertificate without the extension whose OID
/// content octets are `oid`, and reports that extension's index. This is how
/// RFC 6962 relates a precertificate to its final certificate.
fn tbs_without_extension(
    cert_der: &[u8],
    oid: &[u8],
) -> Result<(Vec<u8>, Option<usize>), CertError> {
    let malformed = || CertError::Parse("malformed certificate DER".into());
    let cert = der_split(cert_der).ok_or_else(malformed)?;
    let mut fields = der_split(cert.content).ok_or_else(malformed)?.content;
    let mut tbs = Vec::with_capacity(fields.len());
    let mut found = None;
    while !fields.is_empty() {
        let field = der_split(fields).ok_or_else(malformed)?;
        fields = field.rest;
        // [3] EXPLICIT Extensions
        if field.tag != 0xa3 {
            tbs.extend_from_slice(field.whole);
            continue;
        }
        let mut exts = der_split(field.content).ok_or_else(malformed)?.content;
        let mut kept = Vec::with_capacity(exts.len());
        let mut index = 0;
        while !exts.is_empty() {
            let ext = der_split(exts).ok_or_else(malformed)?;
            exts = ext.rest;
            let ext_oid = der_split(ext.content).ok_or_else(malformed)?;
            if ext_oid.content == oid {
                if found.is_some() {
                    return Err(CertError::Parse("duplicate extension".into()));
                }
                found = Some(index);
            } else {
                kept.extend_from_slice(ext.whole);
            }
            index += 1;
        }
        tbs.extend(der(0xa3, &der(0x30, &kept)));
    }
    Ok((der(0x30, &tbs), found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_constants_match_openssl() {
        for (text, der) in [
            (CT_POISON_OID, CT_POISON_OID_DER),
            (CT_SCT_LIST_OID, CT_SCT_LIST_OID_DER),
            (DV_POLICY_OID, &DV_POLICY_OID_TLV[2..]),
            ("1.3.6.1.5.5.7.48.2", &CA_ISSUERS_OID_TLV[2..]),
        ] {
            assert_eq!(
                Asn1Object::from_str(text).unwrap().as_slice(),
                der,
                "{text}"
            );
        }
    }

    #[test]
    fn der_lengths() {
        assert_eq!(der(0x04, &[1, 2]), [0x04, 2, 1, 2]);
        let long = der(0x04, &[0; 200]);
        assert_eq!(&long[..3], [0x04, 0x81, 200]);
        let longer = der(0x04, &[0; 300]);
        assert_eq!(&longer[..4], [0x04, 0x82, 0x01, 0x2c]);
        let tlv = der_split(&longer).unwrap();
        assert_eq!(
            (tlv.tag, tlv.whole.len(), tlv.content.len(), tlv.rest.len()),
            (4, 304, 300, 0)
        );
    }

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

    #[test]
    fn sct_list_framing() {
        let sct = [0u8; 10];
        let mut list = (sct.len() as u16 + 2).to_be_bytes().to_vec();
        list.extend((sct.len() as u16).to_be_bytes());
        list.extend(sct);
        check_sct_list_ext(&der(0x04, &list)).unwrap();
        assert!(check_sct_list_ext(&list).is_err());
        assert!(check_sct_list_ext(&der(0x04, &[0, 0])).is_err());
        assert!(check_sct_list_ext(&der(0x04, &list[..list.len() - 1])).is_err());
    }
}
