//! Leaf certificate issuance: precertificates, final certificates and the
//! pre-signing lint.
//!
//! The issuer key signs exactly the bytes that were checked. A
//! precertificate's TBSCertificate is written in DER here, linted, and then
//! those same bytes are signed once; a final certificate's TBS is the
//! stored precertificate's with the poison swapped for the SCT list by DER
//! surgery, checked on bytes to differ in nothing else, then signed once.
//!
//! Why not OpenSSL's `X509Builder`, as before: a builder cannot sign bytes
//! it was given, only re-assemble them, so a lint of the exact signed TBS
//! took two assemblies (one signed with a throwaway key) and a comparison;
//! and reading a precertificate, a CSR key or a certificate back went
//! through OpenSSL 3's decoder (~200 µs a call). Writing the DER makes the
//! lint's input the signature's input by construction, at a fraction of
//! the CPU; tests/same_certificates.rs holds the bytes to what the builder
//! made. Keys are read with `pkix`, structures with `x509-parser`.
//!
//! `crl` writes and signs the revocation lists.
//!
//! `profile` says what Kiln issues; `precertificate` writes a leaf from a
//! request and `final_certificate` the certificate from a precertificate
//! and its SCTs; `lint` checks either; `sign` is the issuer's part (checked
//! once, when the issuer is loaded) and the signature; `der` the encoding
//! and the surgery.

mod crl;
mod der;
mod final_certificate;
mod lint;
mod precertificate;
mod profile;
mod sign;

pub use crl::{CrlEntry, CrlReason, CrlRequest, MAX_CRL_VALIDITY_SECS, crl_der};
pub use final_certificate::{build_final_certificate, final_certificate_der};
pub use lint::{LintError, lint_leaf};
pub use precertificate::{LeafRequest, build_precertificate, precertificate_der};
pub use profile::{LeafKeyType, MAX_LEAF_VALIDITY_SECS, OrderProfiles, Profile, ProfileSettings};
pub(crate) use sign::IssuerSigner;

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
    #[error("issuer cannot sign leaves: {0}")]
    BadIssuer(String),
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
