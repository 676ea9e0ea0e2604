//! Leaf certificate issuance: precertificates, final certificates and the
//! pre-signing lint.
//!
//! Every certificate is assembled twice: first signed with a throwaway key and
//! linted, then signed with the real issuer key. The real signature is only
//! returned if its TBSCertificate is byte-identical to the linted one, so the
//! CA key never signs anything that was not checked.
//!
//! `profile` says what Kiln issues; `precertificate` builds a leaf from a
//! request and `final_certificate` the certificate from a precertificate and
//! its SCTs; `lint` checks either; `sign` is the double signing and `der`
//! the hand-made DER both builders need.

mod der;
mod final_certificate;
mod lint;
mod precertificate;
mod profile;
mod sign;

pub use final_certificate::build_final_certificate;
pub use lint::{LintError, lint_leaf};
pub use precertificate::{LeafRequest, build_precertificate};
pub use profile::{LeafKeyType, Profile, leaf_key_type};

use openssl::error::ErrorStack;

/// RFC 6962 §3.1 precertificate poison extension.
pub const CT_POISON_OID: &str = "1.3.6.1.4.1.11129.2.4.3";
/// RFC 6962 §3.3 embedded SCT list extension.
pub const CT_SCT_LIST_OID: &str = "1.3.6.1.4.1.11129.2.4.2";
/// CA/B Forum domain-validated policy.
pub const DV_POLICY_OID: &str = "2.23.140.1.2.1";

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("unsupported public key: {0}")]
    UnsupportedKey(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("invalid profile: {0}")]
    InvalidProfile(&'static str),
    #[error("unsupported issuer key type")]
    UnsupportedIssuerKey,
    #[error("precertificate rejected: {0}")]
    BadPrecertificate(&'static str),
    #[error("malformed SCT list extension value: {0}")]
    BadSctList(&'static str),
    #[error("lint failed: {0}")]
    Lint(#[from] LintError),
    #[error("certificate does not parse: {0}")]
    Parse(String),
    #[error("internal consistency check failed: {0}")]
    Internal(&'static str),
    #[error("openssl: {0}")]
    OpenSsl(#[from] ErrorStack),
}
