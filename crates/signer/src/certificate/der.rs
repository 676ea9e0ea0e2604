//! Hand-made DER: the extension values openssl has no typed builder for,
//! and the TLV surgery that relates a precertificate to its final
//! certificate (RFC 6962).

use openssl::asn1::{Asn1Object, Asn1OctetString};
use openssl::error::ErrorStack;
use openssl::x509::X509Extension;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::CertError;

// Extensions without a typed openssl builder, encoded by hand below.
pub(super) const AIA_OID: &str = "1.3.6.1.5.5.7.1.1";
pub(super) const CERTIFICATE_POLICIES_OID: &str = "2.5.29.32";
pub(super) const CRL_DP_OID: &str = "2.5.29.31";

/// DER content octets of the OIDs above, for matching inside raw TBS bytes.
pub(super) const CT_POISON_OID_DER: &[u8] =
    &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x03];
pub(super) const CT_SCT_LIST_OID_DER: &[u8] =
    &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x02];
/// Full TLVs (tag 06) embedded in hand-encoded extension values.
pub(super) const CA_ISSUERS_OID_TLV: &[u8] =
    &[0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02];
pub(super) const DV_POLICY_OID_TLV: &[u8] = &[0x06, 0x06, 0x67, 0x81, 0x0c, 0x01, 0x02, 0x01];
/// The poison's extnValue: an ASN.1 NULL.
pub(super) const POISON_VALUE: &[u8] = &[0x05, 0x00];

pub(super) fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err("trailing data after certificate".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The TBSCertificate TLV of a certificate.
pub(super) fn tbs_bytes(cert_der: &[u8]) -> Result<&[u8], CertError> {
    der_split(cert_der)
        .and_then(|cert| der_split(cert.content))
        .map(|tbs| tbs.whole)
        .ok_or_else(|| CertError::Parse("malformed certificate DER".into()))
}

/// An extension from its OID and raw extnValue contents.
pub(super) fn der_extension(
    oid: &str,
    critical: bool,
    value: &[u8],
) -> Result<X509Extension, ErrorStack> {
    let oid = Asn1Object::from_str(oid)?;
    let value = Asn1OctetString::new_from_bytes(value)?;
    X509Extension::new_from_der(&oid, critical, &value)
}

/// `AuthorityInfoAccessSyntax` with a single caIssuers URI.
pub(super) fn aia_value(url: &str) -> Vec<u8> {
    let access_description = [CA_ISSUERS_OID_TLV, &der(0x86, url.as_bytes())].concat();
    der(0x30, &der(0x30, &access_description))
}

/// `CRLDistributionPoints` with one point whose fullName is a single URI.
pub(super) fn crl_dp_value(url: &str) -> Vec<u8> {
    let full_name = der(0xa0, &der(0x86, url.as_bytes()));
    der(0x30, &der(0x30, &der(0xa0, &full_name)))
}

/// `CertificatePolicies` with only the CA/B DV policy, no qualifiers.
pub(super) fn policies_value() -> Vec<u8> {
    der(0x30, &der(0x30, DV_POLICY_OID_TLV))
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

/// Re-encodes the certificate's TBSCertificate without the extension whose OID
/// content octets are `oid`, and reports that extension's index. This is how
/// RFC 6962 relates a precertificate to its final certificate.
pub(super) fn tbs_without_extension(
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
    use crate::certificate::{CT_POISON_OID, CT_SCT_LIST_OID, DV_POLICY_OID};

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
}
