//! Signing twice: the draft signed with a throwaway key is what gets checked
//! (linted), and the issuer's signature is returned only over that very TBS.

use openssl::ec::EcKey;
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, PKeyRef, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509Builder};

use super::CertError;
use super::der::tbs_bytes;
use crate::ca::Issuer;

/// Signs twice: with a throwaway key for linting, then with the issuer key;
/// returns the real certificate only if its TBS is exactly what was checked.
pub(super) fn sign_checked(
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
