//! The pre-signing lint: a leaf (precertificate or final certificate)
//! checked field by field against Kiln's profile, on its TBSCertificate.

use std::collections::{BTreeSet, HashSet};

use x509_parser::certificate::{TbsCertificate, Validity};
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::oid_registry::{OID_PKIX_ACCESS_DESCRIPTOR_CA_ISSUERS, OID_X509_COMMON_NAME};
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Version;

use super::der::{POISON_VALUE, parse_cert};
use super::profile::{LeafKey, LeafKeyType, MAX_SERIAL_LEN, Profile, is_http_url};
use super::{CT_POISON_OID, CT_SCT_LIST_OID, DV_POLICY_OID};

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

/// Checks a leaf (precertificate or final) against Kiln's profile; usable
/// on any issued DER. Only the TBSCertificate is checked (see [`lint_tbs`]).
pub fn lint_leaf(
    cert_der: &[u8],
    expected_names: &[String],
    profile: &Profile,
) -> Result<(), LintError> {
    let cert = parse_cert(cert_der).map_err(LintError::Unparseable)?;
    lint(&cert.tbs_certificate, expected_names, profile)
}

/// Checks a DER TBSCertificate: what the builders run on the very bytes the
/// issuer key is about to sign.
pub(super) fn lint_tbs(
    tbs_der: &[u8],
    expected_names: &[String],
    profile: &Profile,
) -> Result<(), LintError> {
    let tbs = match TbsCertificate::from_der(tbs_der) {
        Ok(([], tbs)) => tbs,
        Ok(_) => return Err(LintError::Unparseable("trailing data after TBS".into())),
        Err(e) => return Err(LintError::Unparseable(e.to_string())),
    };
    lint(&tbs, expected_names, profile)
}

fn lint(
    tbs: &TbsCertificate<'_>,
    expected_names: &[String],
    profile: &Profile,
) -> Result<(), LintError> {
    if tbs.version != X509Version::V3 {
        return Err(violation("version", "must be v3"));
    }
    lint_serial(tbs.raw_serial())?;
    lint_validity(&tbs.validity, profile)?;
    let key_type = LeafKey::from_spki(&tbs.subject_pki)
        .map_err(|e| violation("subjectPublicKeyInfo", e.to_string()))?
        .key_type;

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
                        // A dNSName never spells an address: the address
                        // is an iPAddress, and the two must not be confused.
                        GeneralName::DNSName(n) if n.parse::<std::net::IpAddr>().is_err() => {
                            Ok((*n).to_owned())
                        }
                        GeneralName::IPAddress(octets) => domain::ip_address::from_octets(octets)
                            .map(|ip| ip.to_string())
                            .ok_or_else(|| {
                                violation("subjectAltName", "iPAddress of neither 4 nor 16 octets")
                            }),
                        other => Err(violation(
                            "subjectAltName",
                            format!("neither a DNS name nor an IP address: {other:?}"),
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
    lint_subject(tbs, &names, san_critical)
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
    tbs: &TbsCertificate<'_>,
    san_names: &[String],
    san_critical: bool,
) -> Result<(), LintError> {
    let attributes: Vec<_> = tbs.subject.iter_attributes().collect();
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
