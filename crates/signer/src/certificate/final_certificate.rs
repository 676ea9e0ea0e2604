//! Final certificates: the precertificate's TBS with the poison swapped
//! for the SCT list the CT logs returned, nothing else changed. Made by DER
//! surgery on the stored precertificate, then signed once.

use openssl::x509::X509;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Version;

use super::CertError;
use super::der::{
    POISON_VALUE, certificate_fields, extension, oid, parse_cert, tbs_replacing_extension,
    tbs_signature_algorithm, tbs_without_extension,
};
use crate::ca::Issuer;

/// Final certificate DER: the precertificate's TBS with the poison
/// replaced, at the same index, by the SCT list extension
/// (`sct_list_ext_der` is the extnValue contents: an OCTET STRING wrapping
/// the TLS-encoded SCT list).
///
/// Every other byte is copied from the precertificate, not rebuilt from the
/// request, so the only possible difference is the swapped extension; that
/// invariant is checked again on the DER before the issuer key signs. No
/// profile lint is rerun: the precertificate was linted before this issuer
/// signed it, and we only accept precertificates carrying this issuer's
/// signature.
pub fn final_certificate_der(
    issuer: &Issuer,
    precert_der: &[u8],
    sct_list_ext_der: &[u8],
) -> Result<Vec<u8>, CertError> {
    check_sct_list_ext(sct_list_ext_der)?;
    let signer = issuer.signer();

    let precert = parse_cert(precert_der).map_err(CertError::Parse)?;
    let [pre_tbs, algorithm, _] = certificate_fields(precert_der)?;
    // The final certificate keeps the TBS's `signature` field and is signed
    // by this issuer, so that field must name this issuer's algorithm.
    if algorithm != signer.algorithm() || tbs_signature_algorithm(pre_tbs)? != signer.algorithm() {
        return Err(CertError::BadPrecertificate(
            "not signed with this issuer's algorithm",
        ));
    }
    if !signer.signed(&precert) {
        return Err(CertError::BadPrecertificate("not signed by this issuer"));
    }
    let tbs = &precert.tbs_certificate;
    if tbs.version != X509Version::V3 || tbs.issuer_uid.is_some() || tbs.subject_uid.is_some() {
        return Err(CertError::BadPrecertificate(
            "unexpected version or unique identifiers",
        ));
    }
    let poisons: Vec<_> = tbs
        .extensions()
        .iter()
        .filter(|e| e.oid.as_bytes() == oid::CT_POISON)
        .collect();
    match poisons.as_slice() {
        [p] if p.critical && p.value == POISON_VALUE => {}
        _ => {
            return Err(CertError::BadPrecertificate(
                "needs exactly one critical poison extension",
            ));
        }
    }

    let sct_list = extension(oid::CT_SCT_LIST, false, sct_list_ext_der);
    let (final_tbs, _) = tbs_replacing_extension(pre_tbs, oid::CT_POISON, Some(&sct_list))?;
    check_only_the_poison_swapped(pre_tbs, &final_tbs)?;
    signer.sign(&final_tbs)
}

/// [`final_certificate_der`] as an OpenSSL certificate, for callers that
/// want one. Decoding costs more than building: the signer stage keeps the
/// DER.
pub fn build_final_certificate(
    issuer: &Issuer,
    precert_der: &[u8],
    sct_list_ext_der: &[u8],
) -> Result<X509, CertError> {
    Ok(X509::from_der(&final_certificate_der(
        issuer,
        precert_der,
        sct_list_ext_der,
    )?)?)
}

/// RFC 6962 §3.1, checked on bytes before signing: the final TBS minus the
/// SCT list is the precertificate TBS minus the poison, and the SCT list
/// sits where the poison was.
fn check_only_the_poison_swapped(pre_tbs: &[u8], final_tbs: &[u8]) -> Result<(), CertError> {
    let (pre_rest, poison_at) = tbs_without_extension(pre_tbs, oid::CT_POISON)?;
    let (final_rest, sct_at) = tbs_without_extension(final_tbs, oid::CT_SCT_LIST)?;
    let (_, final_poison) = tbs_without_extension(final_tbs, oid::CT_POISON)?;
    if poison_at.is_none() || poison_at != sct_at || final_poison.is_some() {
        return Err(CertError::Internal("SCT list not at the poison's position"));
    }
    if pre_rest != final_rest {
        return Err(CertError::Internal(
            "final TBS differs from precertificate TBS",
        ));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::der::der;

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

    fn precert_and_sct_list() -> (crate::ca::CaHierarchy, Vec<u8>, Vec<u8>) {
        use crate::certificate::{LeafRequest, Profile, precertificate_der};
        use openssl::ec::{EcGroup, EcKey};
        use openssl::pkey::PKey;
        let ca = crate::ca::CaHierarchy::generate().unwrap();
        let group = EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let profile = Profile::new("http://kiln.test/ca.der", "http://kiln.test/crl");
        let (not_before, not_after) = profile.validity_window(1_700_000_000);
        let req = LeafRequest {
            serial: vec![0x01, 0x02, 0x03],
            dns_names: vec!["example.com".into()],
            ip_addresses: vec![],
            public_key_der: key.public_key_to_der().unwrap(),
            not_before,
            not_after,
        };
        let precert = precertificate_der(&ca.intermediate, &req, &profile).unwrap();
        let sct = [0x5a; 40];
        let list = [
            &(sct.len() as u16 + 2).to_be_bytes()[..],
            &(sct.len() as u16).to_be_bytes(),
            &sct,
        ]
        .concat();
        (ca, precert, der(0x04, &list))
    }

    /// Only a precertificate this issuer signed, with its algorithm, is
    /// turned into a final certificate.
    #[test]
    fn tampered_precertificates_are_refused() {
        let (ca, precert, sct_list) = precert_and_sct_list();
        final_certificate_der(&ca.intermediate, &precert, &sct_list).unwrap();

        let mut renamed = precert.clone();
        let at = renamed
            .windows(11)
            .position(|w| w == b"example.com")
            .unwrap();
        renamed[at] = b'f';
        assert!(matches!(
            final_certificate_der(&ca.intermediate, &renamed, &sct_list),
            Err(CertError::BadPrecertificate("not signed by this issuer"))
        ));

        // ecdsa-with-SHA384 in the outer signatureAlgorithm only.
        let outer = precert.len() - certificate_fields(&precert).unwrap()[2].len() - 1;
        let mut sha384 = precert.clone();
        assert_eq!(sha384[outer], 0x02);
        sha384[outer] = 0x03;
        assert!(matches!(
            final_certificate_der(&ca.intermediate, &sha384, &sct_list),
            Err(CertError::BadPrecertificate(
                "not signed with this issuer's algorithm"
            ))
        ));
    }

    #[test]
    fn only_the_poison_may_change() {
        let (_, precert, _) = precert_and_sct_list();
        let [pre_tbs, ..] = certificate_fields(&precert).unwrap();
        let sct_list = extension(oid::CT_SCT_LIST, false, &der(0x04, &[0, 0]));
        let (swapped, _) =
            tbs_replacing_extension(pre_tbs, oid::CT_POISON, Some(&sct_list)).unwrap();
        check_only_the_poison_swapped(pre_tbs, &swapped).unwrap();

        let mut other_name = swapped.clone();
        let at = other_name
            .windows(11)
            .position(|w| w == b"example.com")
            .unwrap();
        other_name[at] = b'f';
        assert!(matches!(
            check_only_the_poison_swapped(pre_tbs, &other_name),
            Err(CertError::Internal(_))
        ));
        // The SCT list first instead of in the poison's place.
        let (without, _) = tbs_without_extension(pre_tbs, oid::CT_POISON).unwrap();
        let key_usage = extension(oid::KEY_USAGE, true, &[0x03, 0x02, 0x07, 0x80]);
        let (moved, at) = tbs_replacing_extension(
            &without,
            oid::KEY_USAGE,
            Some(&[sct_list.as_slice(), &key_usage].concat()),
        )
        .unwrap();
        assert_eq!(at, Some(0));
        assert!(matches!(
            check_only_the_poison_swapped(pre_tbs, &moved),
            Err(CertError::Internal(_))
        ));
        // Both the poison and the SCT list.
        let both = extension(oid::CT_POISON, true, POISON_VALUE);
        let (doubled, _) = tbs_replacing_extension(
            pre_tbs,
            oid::CT_POISON,
            Some(&[sct_list.as_slice(), &both].concat()),
        )
        .unwrap();
        assert!(check_only_the_poison_swapped(pre_tbs, &doubled).is_err());
    }
}
