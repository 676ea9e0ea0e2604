//! Hand-made DER: the TLV primitives, the OIDs and fixed encodings of
//! Kiln's leaf profile, and the TLV surgery that relates a precertificate to
//! its final certificate (RFC 6962).

use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::CertError;

pub(super) const TAG_BOOLEAN: u8 = 0x01;
pub(super) const TAG_INTEGER: u8 = 0x02;
pub(super) const TAG_BIT_STRING: u8 = 0x03;
pub(super) const TAG_OCTET_STRING: u8 = 0x04;
pub(super) const TAG_OID: u8 = 0x06;
pub(super) const TAG_UTF8_STRING: u8 = 0x0c;
pub(super) const TAG_UTC_TIME: u8 = 0x17;
pub(super) const TAG_GENERALIZED_TIME: u8 = 0x18;
pub(super) const TAG_SEQUENCE: u8 = 0x30;
pub(super) const TAG_SET: u8 = 0x31;
/// `[0] EXPLICIT Version` in TBSCertificate.
pub(super) const TAG_VERSION: u8 = 0xa0;
/// `[3] EXPLICIT Extensions` in TBSCertificate.
pub(super) const TAG_EXTENSIONS: u8 = 0xa3;
/// GeneralName `[2] IMPLICIT IA5String` (dNSName).
pub(super) const TAG_DNS_NAME: u8 = 0x82;
/// GeneralName iPAddress, [7] IMPLICIT OCTET STRING.
pub(super) const TAG_IP_ADDRESS: u8 = 0x87;
/// GeneralName `[6] IMPLICIT IA5String` (uniformResourceIdentifier).
pub(super) const TAG_URI: u8 = 0x86;

/// DER content octets of OIDs, for building and for matching inside raw
/// TBS bytes (`oid_constants_match_openssl` checks each against OpenSSL).
pub(super) mod oid {
    pub const KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
    pub const EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
    pub const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
    pub const SUBJECT_KEY_ID: &[u8] = &[0x55, 0x1d, 0x0e];
    pub const AUTHORITY_KEY_ID: &[u8] = &[0x55, 0x1d, 0x23];
    pub const AIA: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x01];
    pub const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
    pub const CERTIFICATE_POLICIES: &[u8] = &[0x55, 0x1d, 0x20];
    pub const CRL_DP: &[u8] = &[0x55, 0x1d, 0x1f];
    pub const CT_POISON: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x03];
    pub const CT_SCT_LIST: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x02];
    pub const SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
    pub const CA_ISSUERS: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02];
    pub const DV_POLICY: &[u8] = &[0x67, 0x81, 0x0c, 0x01, 0x02, 0x01];
    pub const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    pub const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    pub const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    pub const ECDSA_WITH_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    pub const SHA256_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
}

/// The poison's extnValue: an ASN.1 NULL.
pub(super) const POISON_VALUE: &[u8] = &[0x05, 0x00];
const NULL: &[u8] = &[0x05, 0x00];

pub(super) fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err("trailing data after certificate".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn malformed() -> CertError {
    CertError::Parse("malformed certificate DER".into())
}

/// The three fields of a Certificate: TBSCertificate, signatureAlgorithm
/// and signatureValue, each as a whole TLV.
pub(super) fn certificate_fields(cert_der: &[u8]) -> Result<[&[u8]; 3], CertError> {
    let cert = der_split(cert_der).ok_or_else(malformed)?;
    let tbs = der_split(cert.content).ok_or_else(malformed)?;
    let algorithm = der_split(tbs.rest).ok_or_else(malformed)?;
    let signature = der_split(algorithm.rest).ok_or_else(malformed)?;
    if !signature.rest.is_empty() || !cert.rest.is_empty() {
        return Err(malformed());
    }
    Ok([tbs.whole, algorithm.whole, signature.whole])
}

/// The `signature` AlgorithmIdentifier TLV of a v3 TBSCertificate.
pub(super) fn tbs_signature_algorithm(tbs_der: &[u8]) -> Result<&[u8], CertError> {
    let tbs = der_split(tbs_der).ok_or_else(malformed)?;
    let version = der_split(tbs.content).ok_or_else(malformed)?;
    if version.tag != TAG_VERSION {
        return Err(CertError::Parse("not a v3 TBSCertificate".into()));
    }
    let serial = der_split(version.rest).ok_or_else(malformed)?;
    Ok(der_split(serial.rest).ok_or_else(malformed)?.whole)
}

/// `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm,
/// signatureValue BIT STRING }` around a signature over `tbs`.
pub(super) fn certificate(tbs: &[u8], algorithm: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut bits = Vec::with_capacity(signature.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(signature);
    der(
        TAG_SEQUENCE,
        &[tbs, algorithm, &der(TAG_BIT_STRING, &bits)].concat(),
    )
}

/// `AlgorithmIdentifier` with absent parameters (ECDSA, RFC 5758) or, for
/// RSA, NULL ones (RFC 4055), as OpenSSL writes them.
pub(super) fn algorithm_identifier(algorithm: &[u8]) -> Vec<u8> {
    let params: &[u8] = if algorithm == oid::SHA256_WITH_RSA || algorithm == oid::RSA_ENCRYPTION {
        NULL
    } else {
        &[]
    };
    der(TAG_SEQUENCE, &[&der(TAG_OID, algorithm), params].concat())
}

/// An `Extension` (critical only when set: DER omits the default FALSE).
pub(super) fn extension(oid: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
    let critical: &[u8] = if critical {
        &[TAG_BOOLEAN, 1, 0xff]
    } else {
        &[]
    };
    der(
        TAG_SEQUENCE,
        &[&der(TAG_OID, oid), critical, &der(TAG_OCTET_STRING, value)].concat(),
    )
}

/// A non-negative INTEGER from big-endian bytes, minimally encoded.
pub(super) fn unsigned_integer(bytes: &[u8]) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    let magnitude = &bytes[zeros..];
    // A set top bit would read as negative.
    let pad: &[u8] = match magnitude.first() {
        None => &[0],
        Some(b) if b & 0x80 != 0 => &[0],
        Some(_) => &[],
    };
    der(TAG_INTEGER, &[pad, magnitude].concat())
}

/// `Time` as RFC 5280 §4.1.2.5 (and OpenSSL) has it: UTCTime for 1950–2049,
/// GeneralizedTime otherwise; `None` outside years 0–9999.
pub(super) fn time(unix: i64) -> Option<Vec<u8>> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).ok()?;
    let (tag, year) = match t.year() {
        y @ 1950..=2049 => (TAG_UTC_TIME, format!("{:02}", y % 100)),
        y @ 0..=9999 => (TAG_GENERALIZED_TIME, format!("{y:04}")),
        _ => return None,
    };
    let text = format!(
        "{year}{:02}{:02}{:02}{:02}{:02}Z",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    Some(der(tag, text.as_bytes()))
}

/// `AuthorityInfoAccessSyntax` with a single caIssuers URI.
pub(super) fn aia_value(url: &str) -> Vec<u8> {
    let access_description = [der(TAG_OID, oid::CA_ISSUERS), der(TAG_URI, url.as_bytes())].concat();
    der(TAG_SEQUENCE, &der(TAG_SEQUENCE, &access_description))
}

/// `CRLDistributionPoints` with one point whose fullName is a single URI.
pub(super) fn crl_dp_value(url: &str) -> Vec<u8> {
    let full_name = der(0xa0, &der(TAG_URI, url.as_bytes()));
    der(TAG_SEQUENCE, &der(TAG_SEQUENCE, &der(0xa0, &full_name)))
}

/// `CertificatePolicies` with only the CA/B DV policy, no qualifiers.
pub(super) fn policies_value() -> Vec<u8> {
    der(
        TAG_SEQUENCE,
        &der(TAG_SEQUENCE, &der(TAG_OID, oid::DV_POLICY)),
    )
}

/// Encodes one DER TLV (single-byte tag).
pub(super) fn der(tag: u8, content: &[u8]) -> Vec<u8> {
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
pub(super) struct Tlv<'a> {
    pub(super) tag: u8,
    /// Header and content.
    pub(super) whole: &'a [u8],
    pub(super) content: &'a [u8],
    /// What follows the TLV.
    pub(super) rest: &'a [u8],
}

pub(super) fn der_split(input: &[u8]) -> Option<Tlv<'_>> {
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

/// Re-encodes a TBSCertificate with the extension whose OID content octets
/// are `oid` replaced by `replacement` (a whole Extension TLV), or dropped
/// when `replacement` is `None`, and reports that extension's index; every
/// other byte is copied. This is how RFC 6962 relates a precertificate to
/// its final certificate.
pub(super) fn tbs_replacing_extension(
    tbs_der: &[u8],
    oid: &[u8],
    replacement: Option<&[u8]>,
) -> Result<(Vec<u8>, Option<usize>), CertError> {
    let tbs = der_split(tbs_der).ok_or_else(malformed)?;
    if tbs.tag != TAG_SEQUENCE || !tbs.rest.is_empty() {
        return Err(malformed());
    }
    let mut fields = tbs.content;
    let mut out = Vec::with_capacity(fields.len() + replacement.map_or(0, <[u8]>::len));
    let mut found = None;
    while !fields.is_empty() {
        let field = der_split(fields).ok_or_else(malformed)?;
        fields = field.rest;
        if field.tag != TAG_EXTENSIONS {
            out.extend_from_slice(field.whole);
            continue;
        }
        let mut exts = der_split(field.content).ok_or_else(malformed)?.content;
        let mut kept = Vec::with_capacity(exts.len() + replacement.map_or(0, <[u8]>::len));
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
                kept.extend_from_slice(replacement.unwrap_or_default());
            } else {
                kept.extend_from_slice(ext.whole);
            }
            index += 1;
        }
        out.extend(der(TAG_EXTENSIONS, &der(TAG_SEQUENCE, &kept)));
    }
    Ok((der(TAG_SEQUENCE, &out), found))
}

/// The TBSCertificate without the extension `oid`, and that extension's index.
pub(super) fn tbs_without_extension(
    tbs_der: &[u8],
    oid: &[u8],
) -> Result<(Vec<u8>, Option<usize>), CertError> {
    tbs_replacing_extension(tbs_der, oid, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::{CT_POISON_OID, CT_SCT_LIST_OID, DV_POLICY_OID};
    use openssl::asn1::Asn1Object;

    #[test]
    fn oid_constants_match_openssl() {
        for (text, der) in [
            ("2.5.29.15", oid::KEY_USAGE),
            ("2.5.29.37", oid::EXT_KEY_USAGE),
            ("2.5.29.19", oid::BASIC_CONSTRAINTS),
            ("2.5.29.14", oid::SUBJECT_KEY_ID),
            ("2.5.29.35", oid::AUTHORITY_KEY_ID),
            ("1.3.6.1.5.5.7.1.1", oid::AIA),
            ("2.5.29.17", oid::SUBJECT_ALT_NAME),
            ("2.5.29.32", oid::CERTIFICATE_POLICIES),
            ("2.5.29.31", oid::CRL_DP),
            (CT_POISON_OID, oid::CT_POISON),
            (CT_SCT_LIST_OID, oid::CT_SCT_LIST),
            ("1.3.6.1.5.5.7.3.1", oid::SERVER_AUTH),
            ("1.3.6.1.5.5.7.48.2", oid::CA_ISSUERS),
            (DV_POLICY_OID, oid::DV_POLICY),
            ("2.5.4.3", oid::COMMON_NAME),
            ("1.2.840.10045.2.1", oid::EC_PUBLIC_KEY),
            ("1.2.840.10045.3.1.7", oid::P256),
            ("1.3.132.0.34", oid::P384),
            ("1.2.840.113549.1.1.1", oid::RSA_ENCRYPTION),
            ("1.2.840.10045.4.3.2", oid::ECDSA_WITH_SHA256),
            ("1.2.840.113549.1.1.11", oid::SHA256_WITH_RSA),
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
    fn integers_and_times() {
        assert_eq!(unsigned_integer(&[0x01, 0x02]), [0x02, 2, 0x01, 0x02]);
        assert_eq!(unsigned_integer(&[0, 0, 0x80]), [0x02, 2, 0, 0x80]);
        assert_eq!(unsigned_integer(&[0, 0]), [0x02, 1, 0]);
        assert_eq!(unsigned_integer(&[0x01, 0x00, 0x01]), [0x02, 3, 1, 0, 1]);
        let utc = |t| String::from_utf8(time(t).unwrap()[2..].to_vec()).unwrap();
        assert_eq!(time(0).unwrap()[0], TAG_UTC_TIME);
        assert_eq!(utc(0), "700101000000Z");
        assert_eq!(utc(1_700_000_000), "231114221320Z");
        // 2049-12-31T23:59:59Z is the last UTCTime; a second later is 2050.
        assert_eq!(utc(2_524_607_999), "491231235959Z");
        let generalized = time(2_524_608_000).unwrap();
        assert_eq!(generalized[0], TAG_GENERALIZED_TIME);
        assert_eq!(&generalized[2..], b"20500101000000Z");
        assert_eq!(&time(-631_152_001).unwrap()[2..], b"19491231235959Z");
        assert!(time(i64::MAX).is_none());
        assert!(time(-62_167_219_201).is_none(), "year -1");
    }

    /// A TBS-shaped SEQUENCE: two plain fields, then `[3]` with extensions
    /// whose OIDs are the given single bytes.
    fn tbs_with(oids: &[u8]) -> Vec<u8> {
        let exts: Vec<u8> = oids
            .iter()
            .flat_map(|&o| extension(&[o], false, &[0x05, 0x00]))
            .collect();
        let fields = [
            der(TAG_INTEGER, &[7]),
            der(TAG_SEQUENCE, &[]),
            der(TAG_EXTENSIONS, &der(TAG_SEQUENCE, &exts)),
        ]
        .concat();
        der(TAG_SEQUENCE, &fields)
    }

    #[test]
    fn extension_surgery() {
        let tbs = tbs_with(&[1, 2, 3]);
        let (without, at) = tbs_without_extension(&tbs, &[2]).unwrap();
        assert_eq!((without, at), (tbs_with(&[1, 3]), Some(1)));
        let nine = extension(&[9], false, &[0x05, 0x00]);
        let (replaced, at) = tbs_replacing_extension(&tbs, &[2], Some(&nine)).unwrap();
        assert_eq!((replaced, at), (tbs_with(&[1, 9, 3]), Some(1)));
        // Absent: copied unchanged.
        let (same, at) = tbs_replacing_extension(&tbs, &[4], Some(&nine)).unwrap();
        assert_eq!((same, at), (tbs.clone(), None));
        // Lengths are re-encoded when the extension grows past 127 bytes.
        let big = extension(&[9], false, &[0xab; 200]);
        let (grown, _) = tbs_replacing_extension(&tbs, &[2], Some(&big)).unwrap();
        assert_eq!(
            tbs_without_extension(&grown, &[9]).unwrap().0,
            tbs_with(&[1, 3])
        );
        assert!(tbs_without_extension(&tbs_with(&[2, 2]), &[2]).is_err());
        assert!(tbs_without_extension(&tbs[..tbs.len() - 1], &[2]).is_err());
    }

    #[test]
    fn certificate_fields_round_trip() {
        let tbs = tbs_with(&[1]);
        let alg = algorithm_identifier(oid::ECDSA_WITH_SHA256);
        let cert = certificate(&tbs, &alg, &[1, 2, 3]);
        let [t, a, s] = certificate_fields(&cert).unwrap();
        assert_eq!((t, a, s), (&tbs[..], &alg[..], &[0x03, 4, 0, 1, 2, 3][..]));
        assert!(certificate_fields(&[cert.as_slice(), &[0]].concat()).is_err());
        assert_eq!(
            algorithm_identifier(oid::SHA256_WITH_RSA)[13..],
            [0x05, 0x00],
            "RSA parameters are NULL"
        );
    }
}
