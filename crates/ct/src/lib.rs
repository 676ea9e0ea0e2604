//! Certificate Transparency (RFC 6962) data structures and crypto for Kiln.
//!
//! Pure functions only: no IO. The HTTP side lives in `ct-submitter` (client) and
//! `fake-ct-log` (a log front end for tests and laptop mode).

mod der;
mod error;
mod merkle;
mod sct;
mod sign;
mod tls;

#[cfg(any(test, feature = "test-util"))]
pub mod test_util;

pub use der::{
    Extension, Tlv, children, encode_oid, find_extension, is_precertificate, issuer_key_hash,
    read_tlv, subject_public_key_info, tbs_matches_precert, tbs_without_extension, write_tlv,
};
pub use error::CtError;
pub use merkle::{GetSthResponse, leaf_hash, merkle_tree_hash, tree_head_signed_data, verify_sth};
pub use sct::{
    AddChainRequest, AddChainResponse, Sct, decode_sct_list_extension, encode_sct_list_extension,
    scts_from_certificate,
};
pub use sign::{
    HASH_SHA256, LogSigner, SIG_ECDSA, SIG_RSA, log_id, precert_signed_data, verify_sct,
    x509_signed_data,
};

/// The critical precertificate poison extension (RFC 6962 §3.1).
pub const POISON_OID: &str = "1.3.6.1.4.1.11129.2.4.3";
/// The embedded SignedCertificateTimestampList extension (RFC 6962 §3.3).
pub const SCT_LIST_OID: &str = "1.3.6.1.4.1.11129.2.4.2";
/// extnValue contents of the poison extension: an ASN.1 NULL.
pub const POISON_EXTENSION_DER: [u8; 2] = [0x05, 0x00];
/// `sct_version` v1 (RFC 6962 encodes v1 as 0).
pub const SCT_VERSION_V1: u8 = 0;

#[cfg(test)]
mod tests;
