//! The issuer's half of every certificate: what a leaf takes from the CA
//! certificate and key (the issuer name, the key identifier, the signature
//! algorithm), derived and checked once when the issuer is loaded, and the
//! one signature per certificate, by a key in memory or on a PKCS#11 token.

use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::x509::X509Ref;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::x509::AlgorithmIdentifier;

use super::CertError;
use super::der::{algorithm_identifier, certificate, oid, parse_cert};
use crate::ca::{IssuerKey, TokenKeyType};

/// Signs leaves for one CA certificate. Made once per issuer by
/// [`IssuerSigner::with_key`], which refuses a key that does not sign for the
/// certificate: that cannot change while the signer runs, so no certificate
/// is checked for it again.
#[derive(Clone)]
pub(crate) struct IssuerSigner {
    key: IssuerKey,
    /// The certificate's key, for checking that a precertificate handed back
    /// is one this issuer signed.
    public_key: PKey<Public>,
    /// DER AlgorithmIdentifier of `key`'s signatures: a leaf's TBS
    /// `signature` field and its `signatureAlgorithm`.
    algorithm: Vec<u8>,
    /// The certificate's subject, byte for byte: a leaf's issuer.
    name: Vec<u8>,
    /// The certificate's subject key identifier: a leaf's AKI keyIdentifier.
    key_id: Vec<u8>,
}

impl IssuerSigner {
    pub(crate) fn new(cert: &X509Ref, key: &PKey<Private>) -> Result<Self, CertError> {
        Self::with_key(cert, IssuerKey::File(key.clone()))
    }

    pub(crate) fn with_key(cert: &X509Ref, key: IssuerKey) -> Result<Self, CertError> {
        let ec = match &key {
            IssuerKey::File(file) => match file.id() {
                Id::EC => true,
                Id::RSA => false,
                _ => return Err(CertError::UnsupportedIssuerKey),
            },
            IssuerKey::Token(token) => token.key_type() == TokenKeyType::Ec,
        };
        let algorithm = algorithm_identifier(if ec {
            oid::ECDSA_WITH_SHA256
        } else {
            oid::SHA256_WITH_RSA
        });
        let cert_der = cert.to_der()?;
        let parsed = parse_cert(&cert_der).map_err(CertError::Parse)?;
        let public_key = pkix::public_key(parsed.public_key())
            .map_err(|e| CertError::BadIssuer(format!("certificate key: {e}")))?;
        // Without it no leaf could carry the AKI the profile requires.
        let key_id = parsed
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            })
            .ok_or_else(|| CertError::BadIssuer("no subject key identifier".into()))?;
        let signer = Self {
            key,
            public_key,
            algorithm,
            name: parsed.subject().as_raw().to_vec(),
            key_id,
        };
        // One signature made and checked as every leaf's will be: the key,
        // the digest and the AlgorithmIdentifier fit the certificate.
        let probe = b"kiln: does this key sign for its certificate?";
        let signature = signer.signature(probe)?;
        let (_, algorithm) = AlgorithmIdentifier::from_der(&signer.algorithm)
            .map_err(|e| CertError::BadIssuer(format!("signature algorithm: {e}")))?;
        if !pkix::verify_signature(&signer.public_key, &algorithm, probe, &signature)
            .unwrap_or(false)
        {
            return Err(CertError::BadIssuer(
                "the key's signatures do not verify under the certificate".into(),
            ));
        }
        Ok(signer)
    }

    pub(super) fn algorithm(&self) -> &[u8] {
        &self.algorithm
    }

    pub(super) fn name(&self) -> &[u8] {
        &self.name
    }

    pub(super) fn key_id(&self) -> &[u8] {
        &self.key_id
    }

    /// The certificate made of `tbs` (whose `signature` field must be
    /// [`Self::algorithm`]) and this issuer's signature over exactly it.
    pub(super) fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, CertError> {
        Ok(certificate(tbs, &self.algorithm, &self.signature(tbs)?))
    }

    fn signature(&self, data: &[u8]) -> Result<Vec<u8>, CertError> {
        match &self.key {
            IssuerKey::File(key) => Ok(pkix::sign_with_digest(key, MessageDigest::sha256(), data)?),
            IssuerKey::Token(token) => token.sign(data),
        }
    }

    /// Whether this issuer's key made the certificate's signature.
    pub(super) fn signed(&self, cert: &X509Certificate<'_>) -> bool {
        pkix::verify_signature(
            &self.public_key,
            &cert.signature_algorithm,
            cert.tbs_certificate.as_ref(),
            cert.signature_value.data.as_ref(),
        )
        .unwrap_or(false)
    }
}
