//! A CT log as configured: its API, its key and operator, its temporal shard.

use std::fmt;

/// The API a log implements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LogKind {
    /// RFC 6962 (`/ct/v1/...` for submission and monitoring).
    #[default]
    Rfc6962,
    /// c2sp.org/static-ct-api: RFC 6962 submission, tiled monitoring.
    StaticCt,
}

impl LogKind {
    /// The configuration spelling: `rfc6962` or `static-ct`.
    pub fn parse(s: &str) -> Option<LogKind> {
        match s {
            "rfc6962" => Some(LogKind::Rfc6962),
            "static-ct" => Some(LogKind::StaticCt),
            _ => None,
        }
    }
}

impl fmt::Display for LogKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogKind::Rfc6962 => "rfc6962",
            LogKind::StaticCt => "static-ct",
        })
    }
}

/// A CT log as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtLog {
    pub name: String,
    /// Base URL, e.g. `https://ct.example/2025h1` or `http://127.0.0.1:1234`.
    pub url: String,
    /// The log's DER SubjectPublicKeyInfo.
    pub public_key_der: Vec<u8>,
    pub operator: String,
    pub kind: LogKind,
    /// Temporal sharding: the log accepts only certificates whose notAfter (unix seconds) is
    /// at or after this...
    pub not_after_start: Option<i64>,
    /// ...and strictly before this. `None`: unbounded on that side.
    pub not_after_end: Option<i64>,
}

impl CtLog {
    /// An RFC 6962 log without temporal sharding.
    pub fn new(
        name: impl Into<String>,
        url: impl Into<String>,
        public_key_der: Vec<u8>,
        operator: impl Into<String>,
    ) -> CtLog {
        CtLog {
            name: name.into(),
            url: url.into(),
            public_key_der,
            operator: operator.into(),
            kind: LogKind::Rfc6962,
            not_after_start: None,
            not_after_end: None,
        }
    }

    /// Whether this log takes a certificate expiring at `not_after` (unix seconds).
    pub fn accepts_not_after(&self, not_after: i64) -> bool {
        self.not_after_start.is_none_or(|start| not_after >= start)
            && self.not_after_end.is_none_or(|end| not_after < end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::submit::test_util::*;

    #[test]
    fn kinds_parse_from_config() {
        assert_eq!(LogKind::parse("rfc6962"), Some(LogKind::Rfc6962));
        assert_eq!(LogKind::parse("static-ct"), Some(LogKind::StaticCt));
        assert_eq!(LogKind::parse("static"), None);
        assert_eq!(LogKind::StaticCt.to_string(), "static-ct");
        assert_eq!(LogKind::default(), LogKind::Rfc6962);
    }

    #[test]
    fn temporal_shards_take_only_their_interval() {
        let shard = CtLog {
            not_after_start: Some(T0),
            not_after_end: Some(T0 + 180 * DAY),
            ..log("2027h1", "A")
        };
        assert!(!shard.accepts_not_after(T0 - 1));
        assert!(shard.accepts_not_after(T0), "start is inclusive");
        assert!(shard.accepts_not_after(T0 + 180 * DAY - 1));
        assert!(!shard.accepts_not_after(T0 + 180 * DAY), "end is exclusive");
        let open_end = CtLog {
            not_after_end: None,
            ..shard.clone()
        };
        assert!(open_end.accepts_not_after(i64::MAX));
        assert!(log("any", "A").accepts_not_after(i64::MIN));
    }
}
