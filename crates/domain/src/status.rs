//! The states of ACME resources (RFC 8555 §7.1.6) and of Kiln's pipeline.

use serde::{Deserialize, Serialize};

/// A closed set of states as text; or, with `else Unknown = "text"`, a set a
/// newer build may extend: a string read from the database that this build
/// does not know is then `Unknown` instead of an error (a rolling deploy
/// must not make older replicas fail their reads). `Unknown` is never
/// written; its text is only for logs.
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

        string_enum!(@display $name);
    };
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }
     $(#[$um:meta])* else $unknown:ident = $unknown_text:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant,)+
            $(#[$um])*
            $unknown,
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ $name::$unknown => $unknown_text }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            /// Never fails: a value this build does not know is `Unknown`.
            fn from_str(s: &str) -> Result<Self, String> {
                Ok(match s {
                    $($text => $name::$variant,)+
                    _ => $name::$unknown,
                })
            }
        }

        string_enum!(@display $name);
    };
    (@display $name:ident) => {
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
    /// A type a newer build offered, read from `challenges.kind`: never
    /// offered, validated or shown by this build (a newer replica handles
    /// it). Not a configuration value: skipped by serde, so a config naming
    /// a type this build lacks is still refused.
    #[serde(skip)]
    else Unknown = "unknown"
);

impl ChallengeType {
    /// Every type Kiln can validate (never [`ChallengeType::Unknown`]).
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
    /// A step a newer build added, read from `orders.step`: the order is
    /// processing in a step this build does not know, so no stage of it
    /// acts on the order and its sweeper re-drives no job for it; the api
    /// still shows it `processing`.
    #[serde(other, rename = "unknown")]
    else Unknown = "unknown"
);

#[cfg(test)]
mod tests {
    use super::*;

    /// A golden vector of what a column holds: the strings this build
    /// writes, then strings a newer build may write.
    fn vector(name: &str) -> (Vec<String>, Vec<String>) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("vectors")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let list = |key: &str| serde_json::from_value(v[key].clone()).unwrap();
        (list("known"), list("added_later"))
    }

    /// What `orders.step` holds reads back as written, and a step a newer
    /// replica stored (a rolling deploy) reads as `Unknown`, never an error,
    /// as text (the column) and as JSON.
    #[test]
    fn stored_steps_decode_and_unknown_ones_fall_back() {
        use FinalizeStep as S;
        let (known, later) = vector("finalize-step.v1.json");
        let steps = [S::CheckCaa, S::SignPrecert, S::SubmitCt, S::SignFinal];
        assert_eq!(known.len(), steps.len());
        for (text, step) in known.iter().zip(steps) {
            assert_eq!(text.parse::<S>(), Ok(step), "{text}");
            assert_eq!(step.as_str(), text);
            let json = serde_json::to_string(&step).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<S>(&json).unwrap(), step);
        }
        for text in later {
            assert_eq!(text.parse::<S>(), Ok(S::Unknown), "{text:?}");
            let json = serde_json::to_string(&text).unwrap();
            assert_eq!(serde_json::from_str::<S>(&json).unwrap(), S::Unknown);
        }
        assert!(!known.iter().any(|k| k == S::Unknown.as_str()));
    }

    /// What `challenges.kind` holds reads back as written; a type a newer
    /// replica offered reads as `Unknown`. Configuration stays strict: serde
    /// refuses a type this build lacks, and never yields `Unknown`.
    #[test]
    fn stored_challenge_types_decode_and_unknown_ones_fall_back() {
        let (known, later) = vector("challenge-type.v1.json");
        assert_eq!(known.len(), ChallengeType::ALL.len());
        for (text, kind) in known.iter().zip(ChallengeType::ALL) {
            assert_eq!(text.parse::<ChallengeType>(), Ok(kind), "{text}");
            assert_eq!(kind.as_str(), text);
            let json = format!("\"{text}\"");
            assert_eq!(serde_json::from_str::<ChallengeType>(&json).unwrap(), kind);
        }
        for text in later {
            assert_eq!(text.parse::<ChallengeType>(), Ok(ChallengeType::Unknown));
            let json = serde_json::to_string(&text).unwrap();
            assert!(
                serde_json::from_str::<ChallengeType>(&json).is_err(),
                "{text:?}"
            );
        }
        for never in ["\"unknown\"", "\"Unknown\""] {
            assert!(serde_json::from_str::<ChallengeType>(never).is_err());
        }
        assert!(!ChallengeType::Unknown.is_dns_based());
    }

    /// Sets that only Kiln's own protocol defines stay closed.
    #[test]
    fn closed_sets_refuse_unknown_strings() {
        assert!("some-status".parse::<OrderStatus>().is_err());
        assert_eq!(
            "processing".parse::<OrderStatus>(),
            Ok(OrderStatus::Processing)
        );
    }
}
