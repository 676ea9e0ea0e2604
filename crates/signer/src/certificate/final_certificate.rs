//! Final certificates: the precertificate's TBS with the poison swapped
//! for the SCT list the CT logs returned, nothing else changed.

use openssl::error::ErrorStack;
use openssl::x509::{X509, X509Builder};
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Version;

use super::der::{
    CT_POISON_OID_DER, CT_SCT_LIST_OID_DER, POISON_VALUE, der_extension, parse_cert,
    tbs_without_extension,
};
use super::sign::sign_checked;
use super::{CT_POISON_OID, CT_SCT_LIST_OID, CertError};
use crate::ca::Issuer;

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
}
