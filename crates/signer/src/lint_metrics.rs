//! `kiln_lint_failures_total{certificate, check}`: certificates the
//! pre-signing lint refused, by certificate (`precert`, `final`) and by
//! check (`unparseable`, `validity`, `san`, `missing_extension`,
//! `violation`). Each series exists at zero from the first signing on, so
//! an alert on any increase works from the start.

use crate::certificate::{CertError, LintError};

const CHECKS: [&str; 5] = [
    "unparseable",
    "validity",
    "san",
    "missing_extension",
    "violation",
];

fn check_of(error: &LintError) -> &'static str {
    match error {
        LintError::Unparseable(_) => "unparseable",
        LintError::ValidityTooLong { .. } => "validity",
        LintError::SanMismatch { .. } => "san",
        LintError::MissingExtension(_) => "missing_extension",
        LintError::Violation { .. } => "violation",
    }
}

/// Records the lint outcome of one certificate build (`error` is the
/// build's error, if it failed; only lint failures count).
pub(crate) fn record(certificate: &'static str, error: Option<&CertError>) {
    let failed = match error {
        Some(CertError::Lint(lint)) => Some(check_of(lint)),
        _ => None,
    };
    for check in CHECKS {
        metrics::counter!(
            "kiln_lint_failures_total",
            "certificate" => certificate,
            "check" => check
        )
        .increment(u64::from(failed == Some(check)));
    }
}
