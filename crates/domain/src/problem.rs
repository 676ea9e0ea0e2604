//! Typed problems. Workers store these; only `api` turns them into RFC 7807
//! documents with `urn:ietf:params:acme:error:*` types (invariant 7).

use serde::{Deserialize, Serialize};

use crate::Identifier;

/// The ACME error types of RFC 8555 §6.7 that Kiln can produce,
/// `alreadyReplaced` of RFC 9773 §7.4 and `invalidProfile` of
/// draft-ietf-acme-profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProblemKind {
    AccountDoesNotExist,
    AlreadyReplaced,
    AlreadyRevoked,
    BadCsr,
    BadNonce,
    BadPublicKey,
    BadRevocationReason,
    BadSignatureAlgorithm,
    Caa,
    Compound,
    Connection,
    Dns,
    ExternalAccountRequired,
    IncorrectResponse,
    InvalidContact,
    InvalidProfile,
    Malformed,
    OrderNotReady,
    RateLimited,
    RejectedIdentifier,
    ServerInternal,
    Tls,
    Unauthorized,
    UnsupportedContact,
    UnsupportedIdentifier,
    /// A kind this build does not know, read from the database where a
    /// newer replica stored it (a rolling deploy): shown as
    /// `serverInternal` with the stored detail rather than failing the
    /// request. Never written by this build.
    #[serde(other)]
    Unknown,
}

impl ProblemKind {
    /// The token after `urn:ietf:params:acme:error:`.
    pub fn acme_name(self) -> &'static str {
        use ProblemKind::*;
        match self {
            AccountDoesNotExist => "accountDoesNotExist",
            AlreadyReplaced => "alreadyReplaced",
            AlreadyRevoked => "alreadyRevoked",
            BadCsr => "badCSR",
            BadNonce => "badNonce",
            BadPublicKey => "badPublicKey",
            BadRevocationReason => "badRevocationReason",
            BadSignatureAlgorithm => "badSignatureAlgorithm",
            Caa => "caa",
            Compound => "compound",
            Connection => "connection",
            Dns => "dns",
            ExternalAccountRequired => "externalAccountRequired",
            IncorrectResponse => "incorrectResponse",
            InvalidContact => "invalidContact",
            InvalidProfile => "invalidProfile",
            Malformed => "malformed",
            OrderNotReady => "orderNotReady",
            RateLimited => "rateLimited",
            RejectedIdentifier => "rejectedIdentifier",
            ServerInternal => "serverInternal",
            Tls => "tls",
            Unauthorized => "unauthorized",
            UnsupportedContact => "unsupportedContact",
            UnsupportedIdentifier => "unsupportedIdentifier",
            Unknown => "serverInternal",
        }
    }

    /// The HTTP status a request failing with this problem is answered with.
    pub fn http_status(self) -> u16 {
        use ProblemKind::*;
        match self {
            Unauthorized | OrderNotReady => 403,
            // RFC 9773 §5: a certificate already replaced is a 409 Conflict.
            AlreadyReplaced => 409,
            RateLimited => 429,
            ServerInternal | Unknown => 500,
            _ => 400,
        }
    }
}

/// A problem as stored with an order, authorization or challenge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subproblems: Vec<Problem>,
}

impl Problem {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Problem {
            kind,
            detail: detail.into(),
            identifier: None,
            subproblems: Vec::new(),
        }
    }

    pub fn for_identifier(mut self, identifier: Identifier) -> Self {
        self.identifier = Some(identifier);
        self
    }

    pub fn with_subproblems(mut self, subproblems: Vec<Problem>) -> Self {
        self.subproblems = subproblems;
        self
    }

    /// A failure inside Kiln: the detail is for logs only and never shown.
    pub fn internal() -> Self {
        Problem::new(
            ProblemKind::ServerInternal,
            "internal error; please retry later",
        )
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.acme_name(), self.detail)
    }
}

impl std::error::Error for Problem {}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(name: &str) -> Problem {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("vectors")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// What the database holds (orders.error, challenges.error) reads back
    /// as written: a build reads what an older one stored.
    #[test]
    fn stored_problems_decode() {
        let a = Identifier::dns("a.test");
        assert_eq!(
            vector("problem-caa.v1.json"),
            Problem::new(ProblemKind::Caa, "CAA forbids issuance").for_identifier(a.clone())
        );
        let mpic = vector("problem-mpic.v1.json");
        assert_eq!(mpic.kind, ProblemKind::Unauthorized);
        assert_eq!(mpic.subproblems.len(), 1);
        assert_eq!(mpic.subproblems[0].identifier, Some(a));
    }

    /// A kind a newer replica stored (a rolling deploy) is read as
    /// `Unknown` and answered as `serverInternal`, never a failed read.
    #[test]
    fn an_unknown_kind_reads_as_unknown() {
        let future = vector("problem-future-kind.v1.json");
        assert_eq!(future.kind, ProblemKind::Unknown);
        assert_eq!(future.kind.acme_name(), "serverInternal");
        assert_eq!(future.kind.http_status(), 500);
        assert_eq!(future.detail, "stored by a newer replica");
    }

    /// Every kind this build writes reads back as itself.
    #[test]
    fn written_kinds_round_trip() {
        let problem = Problem::new(ProblemKind::RejectedIdentifier, "x");
        let json = serde_json::to_string(&problem).unwrap();
        assert!(json.contains("\"rejectedIdentifier\""), "{json}");
        assert_eq!(serde_json::from_str::<Problem>(&json).unwrap(), problem);
    }
}
