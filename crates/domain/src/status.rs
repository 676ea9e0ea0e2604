//! The states of ACME resources (RFC 8555 §7.1.6) and of Kiln's pipeline.

use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!("unknown {} {other:?}", stringify!($name))),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(AccountStatus { Valid = "valid", Deactivated = "deactivated", Revoked = "revoked" });

string_enum!(OrderStatus {
    Pending = "pending",
    Ready = "ready",
    Processing = "processing",
    Valid = "valid",
    Invalid = "invalid",
});

string_enum!(AuthzStatus {
    Pending = "pending",
    Valid = "valid",
    Invalid = "invalid",
    Deactivated = "deactivated",
    Expired = "expired",
    Revoked = "revoked",
});

string_enum!(ChallengeStatus {
    Pending = "pending",
    Processing = "processing",
    Valid = "valid",
    Invalid = "invalid",
});

string_enum!(
    /// `dns-account-01` is draft-ietf-acme-dns-account-label (dns-01 under a
    /// label of the account URL); `dns-persist-01` is draft-ietf-acme-dns-persist
    /// in its deployed -01 form (a standing TXT record naming the CA and the
    /// account, no token).
    ChallengeType {
        Http01 = "http-01",
        Dns01 = "dns-01",
        TlsAlpn01 = "tls-alpn-01",
        DnsAccount01 = "dns-account-01",
        DnsPersist01 = "dns-persist-01",
    }
);

impl ChallengeType {
    /// Every type Kiln can validate.
    pub const ALL: [ChallengeType; 5] = [
        ChallengeType::Http01,
        ChallengeType::Dns01,
        ChallengeType::TlsAlpn01,
        ChallengeType::DnsAccount01,
        ChallengeType::DnsPersist01,
    ];

    /// Proved through DNS records, so usable for a wildcard and never for
    /// an IP address (RFC 8555 §7.1.3, RFC 8738 §7).
    pub fn is_dns_based(self) -> bool {
        matches!(
            self,
            ChallengeType::Dns01 | ChallengeType::DnsAccount01 | ChallengeType::DnsPersist01
        )
    }
}

string_enum!(
    /// Where a `processing` order is in the finalization pipeline. Each step
    /// is owned by one stage; a stage only acts on an order at its own step.
    FinalizeStep {
        CheckCaa = "check-caa",
        SignPrecert = "sign-precert",
        SubmitCt = "submit-ct",
        SignFinal = "sign-final",
    }
);
