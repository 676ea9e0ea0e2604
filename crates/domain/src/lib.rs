//! Kiln's domain model: ACME resources, their states and the rules that move
//! them, as plain data and pure functions. No IO lives here.

#![forbid(unsafe_code)]

mod problem;
mod status;

pub use problem::{Problem, ProblemKind};
pub use status::{
    AccountStatus, AuthzStatus, ChallengeStatus, ChallengeType, FinalizeStep, OrderStatus,
};

use serde::{Deserialize, Serialize};

/// An ACME identifier. Kiln supports only `dns` identifiers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identifier {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

impl Identifier {
    pub fn dns(value: impl Into<String>) -> Self {
        Identifier {
            kind: "dns".into(),
            value: value.into(),
        }
    }

    pub fn is_wildcard(&self) -> bool {
        self.value.starts_with("*.")
    }

    /// The name an authorization is for: a wildcard's base domain (RFC 8555 §7.1.3).
    pub fn authz_name(&self) -> &str {
        self.value.strip_prefix("*.").unwrap_or(&self.value)
    }
}

/// Checks a requested DNS identifier and returns it normalised (lowercase, no
/// trailing dot). `Err` carries the reason for a `rejectedIdentifier` /
/// `malformed` problem.
pub fn normalize_dns_identifier(raw: &str) -> Result<String, Problem> {
    let reject = |why: &str| {
        Err(Problem::new(
            ProblemKind::RejectedIdentifier,
            format!("{raw:?} {why}"),
        ))
    };
    // One trailing dot (the root) is the same name; `a.com..` is not a name.
    let name = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return reject("is not a valid DNS name length");
    }
    let (wild, base) = match name.strip_prefix("*.") {
        Some(base) => (true, base),
        None => (false, name.as_str()),
    };
    if base.parse::<std::net::IpAddr>().is_ok() {
        return reject("is an IP address; use an identifier of type \"ip\" (not supported here)");
    }
    let labels: Vec<&str> = base.split('.').collect();
    if labels.len() < 2 {
        return reject("must have at least two labels");
    }
    for label in &labels {
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if label.is_empty() || label.len() > 63 || !ok_chars {
            return reject("contains an invalid label");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return reject("has a label that starts or ends with a hyphen");
        }
        if label.starts_with("xn--") && !is_valid_a_label(label) {
            return reject("has an xn-- label that is not valid IDNA punycode");
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return reject("has an all-numeric top-level label");
    }
    // Special-use names (RFC 6761, RFC 6762, RFC 7686) never belong to a
    // subscriber, and resolvers answer some of them locally.
    if labels
        .last()
        .is_some_and(|tld| SPECIAL_USE_TLDS.contains(tld))
    {
        return reject("is under a special-use top-level domain");
    }
    if wild && base.contains('*') {
        return reject("may only have a wildcard as its whole first label");
    }
    Ok(name)
}

const SPECIAL_USE_TLDS: &[&str] = &["invalid", "localhost", "local", "onion", "arpa"];

/// RFC 8555 §8.1: key authorization = token || '.' || base64url(JWK thumbprint).
pub fn key_authorization(token: &str, thumbprint: &str) -> String {
    format!("{token}.{thumbprint}")
}

/// The challenge types offered for an identifier: no http-01 or tls-alpn-01
/// for wildcards (RFC 8555 §7.1.3, RFC 8737 §3).
pub fn challenge_types_for(identifier: &Identifier) -> &'static [ChallengeType] {
    if identifier.is_wildcard() {
        &[ChallengeType::Dns01]
    } else {
        &[
            ChallengeType::Http01,
            ChallengeType::Dns01,
            ChallengeType::TlsAlpn01,
        ]
    }
}

/// The status a client sees for an order, derived on read from what is
/// stored: an expired pending/ready order is `invalid`, and a `pending` one
/// whose authorizations are all valid is `ready`.
pub fn order_status_on_read(
    stored: OrderStatus,
    expired: bool,
    authzs: &[AuthzStatus],
) -> OrderStatus {
    match stored {
        OrderStatus::Pending | OrderStatus::Ready if expired => OrderStatus::Invalid,
        OrderStatus::Pending | OrderStatus::Ready => {
            if authzs
                .iter()
                .any(|s| !matches!(s, AuthzStatus::Pending | AuthzStatus::Valid))
            {
                OrderStatus::Invalid
            } else if !authzs.is_empty() && authzs.iter().all(|s| *s == AuthzStatus::Valid) {
                OrderStatus::Ready
            } else {
                OrderStatus::Pending
            }
        }
        other => other,
    }
}

/// An `xn--` label that decodes (RFC 3492) to a label which IDNA (UTS #46,
/// strict) encodes back to exactly it: not garbage after the prefix, not a
/// non-canonical encoding of another name.
fn is_valid_a_label(label: &str) -> bool {
    let (unicode, decoded) = idna::domain_to_unicode(label);
    decoded.is_ok() && idna::domain_to_ascii_strict(&unicode).is_ok_and(|ascii| ascii == label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_normalised_or_rejected() {
        let ok = [
            ("Example.COM.", "example.com"),
            ("*.example.com", "*.example.com"),
            ("a-b.c0.example", "a-b.c0.example"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
        ];
        for (raw, want) in ok {
            assert_eq!(normalize_dns_identifier(raw).unwrap(), want, "{raw}");
        }
        for bad in [
            "",
            "localhost",
            "127.0.0.1",
            "a..b",
            "-a.com",
            "a-.com",
            "*.*.a.com",
            "a.*.com",
            "under_score.com",
            "a.123",
            "a.com..",
            "a.com...",
            "xn--.example",
            "xn--a.example",
        ] {
            let err = normalize_dns_identifier(bad).unwrap_err();
            assert_eq!(err.kind, ProblemKind::RejectedIdentifier, "{bad}");
        }
    }

    #[test]
    fn wildcards_get_only_dns01() {
        assert_eq!(
            challenge_types_for(&Identifier::dns("*.a.com")),
            &[ChallengeType::Dns01]
        );
        assert_eq!(challenge_types_for(&Identifier::dns("a.com")).len(), 3);
        assert_eq!(Identifier::dns("*.a.com").authz_name(), "a.com");
    }

    #[test]
    fn order_status_is_derived_on_read() {
        use AuthzStatus as A;
        use OrderStatus as O;
        let cases = [
            (O::Pending, false, vec![A::Pending, A::Valid], O::Pending),
            (O::Pending, false, vec![A::Valid, A::Valid], O::Ready),
            (O::Pending, false, vec![A::Valid, A::Invalid], O::Invalid),
            (O::Pending, false, vec![A::Deactivated], O::Invalid),
            (O::Pending, true, vec![A::Valid], O::Invalid),
            (O::Ready, false, vec![A::Valid], O::Ready),
            (O::Processing, true, vec![A::Valid], O::Processing),
            (O::Valid, true, vec![A::Valid], O::Valid),
        ];
        for (stored, expired, authzs, want) in cases {
            assert_eq!(order_status_on_read(stored, expired, &authzs), want);
        }
    }
}
