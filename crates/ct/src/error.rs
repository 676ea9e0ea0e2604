use openssl::error::ErrorStack;

/// Everything that can go wrong decoding, encoding, signing or verifying CT structures.
#[derive(Debug, thiserror::Error)]
pub enum CtError {
    #[error("malformed TLS structure: {0}")]
    Tls(&'static str),
    #[error("{what} is {len} bytes, more than the {max} the encoding allows")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("malformed DER: {0}")]
    Der(&'static str),
    #[error("invalid OID {0:?}")]
    InvalidOid(String),
    #[error("extension {0} not found")]
    ExtensionNotFound(String),
    #[error("extension {0} appears more than once")]
    DuplicateExtension(String),
    #[error("malformed poison extension: {0}")]
    BadPoison(&'static str),
    #[error("invalid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("unsupported SCT version {0}")]
    UnsupportedVersion(u8),
    #[error("unsupported signature algorithm (hash {hash_alg}, signature {sig_alg})")]
    UnsupportedAlgorithm { hash_alg: u8, sig_alg: u8 },
    #[error("unsupported key: {0}")]
    UnsupportedKey(&'static str),
    #[error("log ID does not match the log's public key")]
    LogIdMismatch,
    #[error("signature does not verify")]
    BadSignature,
    #[error("openssl: {0}")]
    OpenSsl(#[from] ErrorStack),
}
