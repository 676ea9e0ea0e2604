//! What an order's client is told when a certificate cannot be built, and
//! what the operator is told (invariant 7: internals never leak).
//!
//! Only a key the profile cannot certify is the client's to fix (`badCSR`,
//! with the key's description, which is Kiln's own text). Everything else —
//! OpenSSL's error text (with its source paths), a lint failure, an issuer
//! or consistency problem — is the CA's: the client gets a fixed
//! `serverInternal` detail naming the order, the log gets the whole error.

use crate::certificate::CertError;
use domain::{Problem, ProblemKind};

/// The `order.error` for `e`, raised while building `what` ("precertificate"
/// or "certificate") for `order_id`; logs the full error.
pub(crate) fn refusal(order_id: &str, what: &str, e: &CertError) -> Problem {
    match e {
        CertError::UnsupportedKey(_) => {
            tracing::warn!(order_id, error = %e, "{what} refused: the CSR's key");
            Problem::new(
                ProblemKind::BadCsr,
                format!("cannot issue for this CSR: {e}"),
            )
        }
        _ => {
            tracing::error!(order_id, error = %e, "{what} could not be built");
            internal(order_id)
        }
    }
}

/// The fixed detail of a certificate the CA failed to build.
pub(crate) fn internal(order_id: &str) -> Problem {
    Problem::new(
        ProblemKind::ServerInternal,
        format!(
            "the certificate could not be issued; the CA's operators have the details \
             (order {order_id})"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::LintError;

    fn openssl_error() -> openssl::error::ErrorStack {
        // A real ErrorStack: its text names OpenSSL's source files.
        openssl::pkey::PKey::private_key_from_der(b"not a key").unwrap_err()
    }

    #[test]
    fn only_the_csr_key_is_the_clients_and_nothing_internal_is_shown() {
        let stack = openssl_error();
        let stack_text = stack.to_string();
        assert!(!stack_text.is_empty());
        let internal_errors = [
            CertError::OpenSsl(stack),
            CertError::BadIssuer("certificate key: /etc/kiln/ca/intermediate.key".into()),
            CertError::InvalidRequest("validity out of range".into()),
            CertError::InvalidProfile("crl_url must be an http:// URL"),
            CertError::UnsupportedIssuerKey,
            CertError::BadPrecertificate("not signed by this issuer"),
            CertError::BadSctList("truncated"),
            CertError::Lint(LintError::MissingExtension("subjectKeyIdentifier")),
            CertError::Parse("malformed certificate DER".into()),
            CertError::Internal("SCT list not at the poison's position"),
        ];
        for e in &internal_errors {
            let problem = refusal("ord42", "precertificate", e);
            assert_eq!(problem.kind, ProblemKind::ServerInternal, "{e}");
            assert_eq!(
                problem.detail,
                "the certificate could not be issued; the CA's operators have the details \
                 (order ord42)"
            );
            assert!(problem.subproblems.is_empty() && problem.identifier.is_none());
            let shown = format!("{problem:?}");
            for fragment in [e.to_string(), stack_text.clone()] {
                assert!(!shown.contains(&fragment), "{shown} shows {fragment}");
            }
        }
        let key = refusal(
            "ord42",
            "precertificate",
            &CertError::UnsupportedKey("RSA-1024".into()),
        );
        assert_eq!(key.kind, ProblemKind::BadCsr);
        assert!(key.detail.contains("RSA-1024"), "{}", key.detail);
    }
}
