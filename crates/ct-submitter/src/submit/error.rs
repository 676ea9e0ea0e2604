//! What can go wrong: with one log ([`LogError`]), with a whole submission ([`SubmitError`]).

use std::fmt;
use std::time::Duration;

use ct::CtError;

use super::Requirement;

/// Why one log did not yield a usable SCT.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("timed out")]
    Timeout,
    #[error("request failed: {0}")]
    Transport(String),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("malformed response: {0}")]
    BadResponse(String),
    #[error("SCT does not verify: {0}")]
    BadSct(CtError),
    #[error("still pending when the deadline passed")]
    DeadlinePassed,
}

impl LogError {
    pub(super) fn from_reqwest(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            return LogError::Timeout;
        }
        // reqwest's own message omits the cause ("connection refused" etc.).
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        LogError::Transport(msg)
    }
}

#[derive(Debug)]
pub struct LogFailure {
    pub log_name: String,
    pub operator: String,
    pub error: LogError,
}

impl fmt::Display for LogFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.log_name, self.operator, self.error)
    }
}

fn list(failures: &[LogFailure]) -> String {
    if failures.is_empty() {
        return "no log failed".to_owned();
    }
    let parts: Vec<String> = failures.iter().map(ToString::to_string).collect();
    format!("failures: {}", parts.join("; "))
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The configuration can never satisfy the policy for this certificate: not worth
    /// retrying.
    #[error(
        "CT policy needs {requirement}, but only {logs} configured logs ({rfc6962} RFC 6962) \
         from {operators} operators take this certificate ({sharded_out} excluded by their \
         notAfter interval)"
    )]
    NotEnoughLogs {
        requirement: Requirement,
        logs: usize,
        operators: usize,
        rfc6962: usize,
        sharded_out: usize,
    },
    /// Time ran out; logs may just be slow, so a later retry can succeed.
    #[error("CT deadline of {deadline:?} passed with {verified} verified SCTs; {}", list(.failures))]
    DeadlinePassed {
        deadline: Duration,
        verified: usize,
        failures: Vec<LogFailure>,
    },
    /// Every log that could help was tried; a later retry can succeed if they recover.
    #[error("all usable CT logs tried, {verified} verified SCTs do not meet the policy; {}", list(.failures))]
    LogsExhausted {
        verified: usize,
        failures: Vec<LogFailure>,
    },
    #[error("cannot submit this certificate: {0}")]
    InvalidCertificate(#[from] CtError),
    #[error("cannot read the certificate's validity: {0}")]
    BadValidity(String),
    #[error("expected a final certificate but got a precertificate")]
    PrecertificateGiven,
}

impl SubmitError {
    /// The per-log failures behind a deadline or exhaustion error.
    pub fn failures(&self) -> &[LogFailure] {
        match self {
            SubmitError::DeadlinePassed { failures, .. }
            | SubmitError::LogsExhausted { failures, .. } => failures,
            _ => &[],
        }
    }

    /// Whether trying again later may succeed without a configuration or input change.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SubmitError::DeadlinePassed { .. } | SubmitError::LogsExhausted { .. }
        )
    }
}
