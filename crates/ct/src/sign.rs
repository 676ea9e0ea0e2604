//! The data a log signs (RFC 6962 §3.2), log signing and SCT verification.

use openssl::ec::EcKey;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::sha::sha256;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::tls::{put_u16_prefixed, put_u24_prefixed};
use crate::{CtError, SCT_VERSION_V1, Sct};

/// TLS HashAlgorithm `sha256`.
pub const HASH_SHA256: u8 = 4;
/// TLS SignatureAlgorithm `rsa` (PKCS#1 v1.5).
pub const SIG_RSA: u8 = 1;
/// TLS SignatureAlgorithm `ecdsa`.
pub const SIG_ECDSA: u8 = 3;

const SIGNATURE_TYPE_CERTIFICATE_TIMESTAMP: u8 = 0;
const ENTRY_TYPE_X509: u16 = 0;
const ENTRY_TYPE_PRECERT: u16 = 1;

/// The log ID: SHA-256 of the log's DER SubjectPublicKeyInfo.
pub fn log_id(spki_der: &[u8]) -> [u8; 32] {
    sha256(spki_der)
}

fn signed_data(
    timestamp: u64,
    entry_type: u16,
    entry: &[u8],
    extensions: &[u8],
) -> Result<Vec<u8>, CtError> {
    let mut out = Vec::with_capacity(12 + entry.len() + 2 + extensions.len());
    out.push(SCT_VERSION_V1);
    out.push(SIGNATURE_TYPE_CERTIFICATE_TIMESTAMP);
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&entry_type.to_be_bytes());
    out.extend_from_slice(entry);
    put_u16_prefixed(&mut out, "SCT extensions", extensions)?;
    Ok(out)
}

/// What an SCT for a precertificate signs. `tbs_der` is the precert's TBSCertificate without
/// the poison (see [`crate::tbs_without_extension`]).
///
/// Byte for byte this is also the `MerkleTreeLeaf` of the entry (§3.4), because the
/// `signature_type` and `leaf_type` codes are both 0; logs hash it with [`crate::leaf_hash`].
pub fn precert_signed_data(
    timestamp: u64,
    issuer_key_hash: &[u8; 32],
    tbs_der: &[u8],
    extensions: &[u8],
) -> Result<Vec<u8>, CtError> {
    let mut entry = Vec::with_capacity(32 + 3 + tbs_der.len());
    entry.extend_from_slice(issuer_key_hash);
    put_u24_prefixed(&mut entry, "TBSCertificate", tbs_der)?;
    signed_data(timestamp, ENTRY_TYPE_PRECERT, &entry, extensions)
}

/// What an SCT for a final (x509_entry) certificate signs; also its `MerkleTreeLeaf`.
pub fn x509_signed_data(
    timestamp: u64,
    cert_der: &[u8],
    extensions: &[u8],
) -> Result<Vec<u8>, CtError> {
    let mut entry = Vec::with_capacity(3 + cert_der.len());
    put_u24_prefixed(&mut entry, "certificate", cert_der)?;
    signed_data(timestamp, ENTRY_TYPE_X509, &entry, extensions)
}

/// A log's signing key: ECDSA P-256 with SHA-256, as every current log uses.
pub struct LogSigner {
    key: PKey<Private>,
    spki_der: Vec<u8>,
    log_id: [u8; 32],
}

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("LogSigner")
            .field("log_id", &self.log_id)
            .finish_non_exhaustive()
    }
}

impl LogSigner {
    /// Takes a P-256 key; any other key is refused because SCTs would say `ecdsa`/`sha256`.
    pub fn new(key: PKey<Private>) -> Result<Self, CtError> {
        let ec = key
            .ec_key()
            .map_err(|_| CtError::UnsupportedKey("log key is not EC"))?;
        if ec.group().curve_name() != Some(Nid::X9_62_PRIME256V1) {
            return Err(CtError::UnsupportedKey("log key is not P-256"));
        }
        let spki_der = key.public_key_to_der()?;
        let log_id = log_id(&spki_der);
        Ok(Self {
            key,
            spki_der,
            log_id,
        })
    }

    /// A fresh random P-256 log key.
    pub fn generate() -> Result<Self, CtError> {
        let group = openssl::ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        Self::new(PKey::from_ec_key(EcKey::generate(&group)?)?)
    }

    pub fn key(&self) -> &PKey<Private> {
        &self.key
    }

    /// The log's DER SubjectPublicKeyInfo, as published in log lists.
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki_der
    }

    pub fn log_id(&self) -> [u8; 32] {
        self.log_id
    }

    /// Signs arbitrary data (SCT or tree head input) with ECDSA-SHA256, DER signature.
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, CtError> {
        Ok(pkix::sign_with_digest(
            &self.key,
            MessageDigest::sha256(),
            data,
        )?)
    }

    fn sct(&self, timestamp: u64, extensions: &[u8], data: &[u8]) -> Result<Sct, CtError> {
        Ok(Sct {
            version: SCT_VERSION_V1,
            log_id: self.log_id,
            timestamp,
            extensions: extensions.to_vec(),
            hash_alg: HASH_SHA256,
            sig_alg: SIG_ECDSA,
            signature: self.sign(data)?,
        })
    }

    pub fn sign_precert(
        &self,
        timestamp: u64,
        issuer_key_hash: &[u8; 32],
        tbs_der: &[u8],
        extensions: &[u8],
    ) -> Result<Sct, CtError> {
        let data = precert_signed_data(timestamp, issuer_key_hash, tbs_der, extensions)?;
        self.sct(timestamp, extensions, &data)
    }

    pub fn sign_x509(
        &self,
        timestamp: u64,
        cert_der: &[u8],
        extensions: &[u8],
    ) -> Result<Sct, CtError> {
        let data = x509_signed_data(timestamp, cert_der, extensions)?;
        self.sct(timestamp, extensions, &data)
    }
}

/// Checks a `DigitallySigned` over `data` with the log key. Both key types found in real logs
/// are accepted, but the key type must agree with the declared algorithm.
pub(crate) fn verify_digitally_signed(
    hash_alg: u8,
    sig_alg: u8,
    signature: &[u8],
    log_spki_der: &[u8],
    data: &[u8],
) -> Result<(), CtError> {
    let key = log_key(log_spki_der)?;
    let key_matches = match sig_alg {
        SIG_ECDSA => key.id() == Id::EC,
        SIG_RSA => key.id() == Id::RSA,
        _ => false,
    };
    if hash_alg != HASH_SHA256 || !key_matches {
        return Err(CtError::UnsupportedAlgorithm { hash_alg, sig_alg });
    }
    // A malformed signature and a wrong one mean the same thing here.
    match pkix::verify_digest_signature(&key, Some(MessageDigest::sha256()), data, signature) {
        true => Ok(()),
        false => Err(CtError::BadSignature),
    }
}

/// Log keys already parsed, by their own DER: an entry can never describe
/// another key, so it is never stale. A submitter knows a handful of logs;
/// the bound only stops a caller with ever-new keys from growing it.
const LOG_KEYS_KEPT: usize = 64;

/// The parsed key of `spki_der`. Parsing it for every SCT cost more than the
/// verification: OpenSSL 3 converts a fresh key for its provider on first
/// use, and that conversion is kept inside the `PKey` for later ones.
fn log_key(spki_der: &[u8]) -> Result<PKey<Public>, CtError> {
    static KEYS: OnceLock<Mutex<HashMap<Vec<u8>, PKey<Public>>>> = OnceLock::new();
    let keys = KEYS.get_or_init(Default::default);
    if let Some(key) = keys.lock().unwrap_or_else(|e| e.into_inner()).get(spki_der) {
        return Ok(key.clone());
    }
    // Not PKey::public_key_from_der: OpenSSL 3's decoder costs ~170 us per
    // call (see `pkix`).
    let key = pkix::public_key_from_spki(spki_der).map_err(|_| CtError::BadSignature)?;
    let mut keys = keys.lock().unwrap_or_else(|e| e.into_inner());
    if keys.len() >= LOG_KEYS_KEPT {
        keys.clear();
    }
    keys.insert(spki_der.to_vec(), key.clone());
    Ok(key)
}

/// Verifies an SCT against the log's public key and the entry it claims to cover
/// (`signed_data` from [`precert_signed_data`] or [`x509_signed_data`], built with the SCT's own
/// timestamp and extensions).
pub fn verify_sct(sct: &Sct, log_spki_der: &[u8], signed_data: &[u8]) -> Result<(), CtError> {
    if sct.version != SCT_VERSION_V1 {
        return Err(CtError::UnsupportedVersion(sct.version));
    }
    if sct.log_id != log_id(log_spki_der) {
        return Err(CtError::LogIdMismatch);
    }
    verify_digitally_signed(
        sct.hash_alg,
        sct.sig_alg,
        &sct.signature,
        log_spki_der,
        signed_data,
    )
}
