//! Certificate profiles (draft-ietf-acme-profiles): the names a client may
//! ask for in newOrder, and what each means. Modelled on Let's Encrypt's:
//! the api offers them in the directory and checks the name, the order
//! keeps it, and the signer issues by it (`signer::certificate::Profile`).

use std::fmt;
use std::time::Duration;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CertificateProfile {
    /// The default: the deployment's validity (90 days unless configured),
    /// a common name when one fits.
    #[default]
    Classic,
    /// 45 days, no common name: what the BRs' shorter lifetimes lead to.
    TlsServer,
    /// 160 hours (under seven days), no common name.
    ShortLived,
}

impl CertificateProfile {
    pub const ALL: [CertificateProfile; 3] = [
        CertificateProfile::Classic,
        CertificateProfile::TlsServer,
        CertificateProfile::ShortLived,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CertificateProfile::Classic => "classic",
            CertificateProfile::TlsServer => "tlsserver",
            CertificateProfile::ShortLived => "shortlived",
        }
    }

    /// The profile a client names; `None` for a name Kiln does not offer.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// What the directory's `meta.profiles` says of it.
    pub fn description(self) -> &'static str {
        match self {
            CertificateProfile::Classic => {
                "The default: the CA's usual validity (90 days unless configured), a common name when one fits"
            }
            CertificateProfile::TlsServer => {
                "45 days unless configured, no common name, serverAuth only"
            }
            CertificateProfile::ShortLived => {
                "160 hours unless configured, no common name, serverAuth only; the only profile for IP addresses"
            }
        }
    }

    /// A validity of the profile's own, or `None` for the deployment's
    /// configured one (`classic`); the signer's `[signer.profiles]` may set
    /// another.
    pub fn validity(self) -> Option<Duration> {
        match self {
            CertificateProfile::Classic => None,
            CertificateProfile::TlsServer => Some(Duration::from_secs(45 * 24 * 3600)),
            CertificateProfile::ShortLived => Some(Duration::from_secs(160 * 3600)),
        }
    }

    /// Whether the subject carries a common name (when a name fits in one).
    pub fn common_name(self) -> bool {
        self == CertificateProfile::Classic
    }

    /// Whether an order in this profile may name IP addresses: only the
    /// short-lived one, as at Let's Encrypt (an address changes hands far
    /// sooner than a domain).
    pub fn allows_ip_identifiers(self) -> bool {
        self == CertificateProfile::ShortLived
    }
}

impl fmt::Display for CertificateProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_others_are_unknown() {
        for profile in CertificateProfile::ALL {
            assert_eq!(CertificateProfile::from_name(profile.name()), Some(profile));
        }
        for unknown in ["", "Classic", "default", "shortLived", "tls-server"] {
            assert_eq!(CertificateProfile::from_name(unknown), None, "{unknown}");
        }
        assert_eq!(CertificateProfile::default(), CertificateProfile::Classic);
    }

    #[test]
    fn lifetimes_are_the_ones_the_directory_describes() {
        assert_eq!(CertificateProfile::Classic.validity(), None);
        assert_eq!(
            CertificateProfile::TlsServer.validity(),
            Some(Duration::from_secs(45 * 86400))
        );
        let short = CertificateProfile::ShortLived.validity().unwrap();
        assert_eq!(short.as_secs(), 160 * 3600);
        assert!(short < Duration::from_secs(7 * 86400));
    }
}
