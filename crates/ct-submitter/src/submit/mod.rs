//! Hedged submission of precertificates to CT logs, and best-effort logging of final
//! certificates.
//!
//! A precertificate needs SCTs from enough logs of enough distinct operators before the final
//! certificate can be issued, and logs are often slow or flaky. So submissions are hedged:
//! as many start at once as are still needed (two with the usual policy), preferring
//! operators not yet covered; another starts on every stagger tick and a failed one is
//! replaced at once; everything else is dropped as soon as the policy holds. An SCT counts
//! only after its signature verifies against the configured key of the log that sent it.
//!
//! The policy follows Chrome's: at least 2 SCTs (3 when the certificate's lifetime exceeds
//! 180 days) from at least 2 operators, at least one of them from an RFC 6962 log. Logs are
//! either RFC 6962 or static-ct-api logs; a log that is temporally sharded only takes
//! certificates whose notAfter falls in its interval, and the others are never asked.
//!
//! Static-ct-api logs keep RFC 6962's submission endpoints (`add-chain`, `add-pre-chain`), so
//! they are submitted to exactly like RFC 6962 logs; their SCT extensions (the leaf index) are
//! covered by the signature check as opaque bytes and not interpreted. What differs, the
//! tiled read path for monitors, is not something a CA uses. The kind matters to the policy.
//!
//! `log` is a configured log, `policy` what a certificate needs from the logs, `hedge` the
//! hedged precertificate submission, `final_certificate` the best-effort logging of the final
//! certificate, `http` one submission to one log, `error` what can go wrong.

mod error;
mod final_certificate;
mod hedge;
mod http;
mod log;
mod policy;
#[cfg(test)]
mod test_util;

pub use error::{LogError, LogFailure, SubmitError};
pub use final_certificate::{FinalSubmission, submit_final};
pub use hedge::{EmbeddedSct, submit_precert};
pub use log::{CtLog, LogKind};
pub use policy::{Requirement, Selection, SubmitPolicy, select_logs};

/// `(notBefore, notAfter)` of a DER certificate, in unix seconds. Parsed
/// with x509-parser: OpenSSL 3's `X509::from_der` costs ~200 us per call.
pub fn validity(cert_der: &[u8]) -> Result<(i64, i64), SubmitError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| SubmitError::BadValidity(e.to_string()))?;
    let validity = cert.validity();
    Ok((
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    ))
}
