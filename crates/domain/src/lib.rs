//! Kiln's domain model: ACME resources, their states and the rules that move
//! them, as plain data and pure functions. No IO lives here.

#![forbid(unsafe_code)]

mod certificate_profile;
pub mod identifier_policy;
pub mod ip_address;
mod problem;
pub mod public_suffix;
mod status;

pub use certificate_profile::CertificateProfile;
pub use identifier_policy::{IdentifierPolicy, PolicyError};
pub use public_suffix::PublicSuffixList;

pub use problem::{Problem, ProblemKind};
pub use status::{
    AccountStatus, AuthzStatus, ChallengeStatus, ChallengeType, FinalizeStep, OrderStatus,
};

use serde::{Deserialize, Serialize};

/// An ACME identifier: `dns` (RFC 8555) or `ip` (RFC 8738).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identifier {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

impl Identifier {
    pub const DNS: &'static str = "dns";
    pub const IP: &'static str = "ip";

    pub fn dns(value: impl Into<String>) -> Self {
        Identifier {
            kind: Self::DNS.into(),
            value: value.into(),
        }
    }

    /// An IP-address identifier, in its one text form (RFC 8738 §3).
    pub fn ip(address: std::net::IpAddr) -> Self {
        Identifier {
            kind: Self::IP.into(),
            value: address.to_string(),
        }
    }

    /// The identifier an authorization's stored value names. A DNS
    /// identifier never parses as an address (the policy refuses such
    /// names), so the value alone says which kind it is.
    pub fn from_authz_value(value: &str) -> Self {
        match value.parse() {
            Ok(address) => Identifier::ip(address),
            Err(_) => Identifier::dns(value),
        }
    }

    /// The address of an `ip` identifier.
    pub fn ip_address(&self) -> Option<std::net::IpAddr> {
        (self.kind == Self::IP)
            .then(|| self.value.parse().ok())
            .flatten()
    }

    pub fn is_wildcard(&self) -> bool {
        self.value.starts_with("*.")
    }

    /// The name an authorization is for: a wildcard's base domain (RFC 8555 §7.1.3).
    pub fn authz_name(&self) -> &str {
        self.value.strip_prefix("*.").unwrap_or(&self.value)
    }
}

/// Checks a requested DNS identifier against the strictest policy (no
/// special-use domain allowed, nothing blocked) and returns it normalised;
/// the api uses its configured [`IdentifierPolicy`] instead.
pub fn normalize_dns_identifier(raw: &str) -> Result<String, Problem> {
    IdentifierPolicy::default().check(raw)
}

/// RFC 8555 §8.1: key authorization = token || '.' || base64url(JWK thumbprint).
pub fn key_authorization(token: &str, thumbprint: &str) -> String {
    format!("{token}.{thumbprint}")
}

/// The challenge types that can prove control of an identifier: only the
/// DNS-based ones for a wildcard (RFC 8555 §7.1.3, RFC 8737 §3), none of
/// them for an IP address (RFC 8738 §7). Which are offered is configured
/// on top of this.
pub fn challenge_types_for(identifier: &Identifier) -> impl Iterator<Item = ChallengeType> + '_ {
    ChallengeType::ALL.into_iter().filter(|kind| {
        if identifier.kind == Identifier::IP {
            !kind.is_dns_based()
        } else {
            kind.is_dns_based() || !identifier.is_wildcard()
        }
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_get_only_dns01() {
        use ChallengeType as C;
        let types = |i: Identifier| challenge_types_for(&i).collect::<Vec<_>>();
        assert_eq!(
            types(Identifier::dns("*.a.com")),
            [C::Dns01, C::DnsAccount01, C::DnsPersist01]
        );
        assert_eq!(types(Identifier::dns("a.com")), C::ALL);
        let address: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(types(Identifier::ip(address)), [C::Http01, C::TlsAlpn01]);
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
