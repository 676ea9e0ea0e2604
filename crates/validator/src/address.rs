//! Which addresses validation may connect to: the defence against a client
//! aiming the validator at the CA's own network (SSRF). A challenge's name
//! is the client's to choose and so is its DNS answer, or a redirect's IP
//! literal; without this check they could make the validator fetch from
//! loopback services, the cloud metadata address or any private host.
//!
//! The check is made on the address actually connected to, at connect time
//! ([`crate::connect`]), for the first hop and for every redirect, so
//! neither a later DNS answer nor an IP literal gets around it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The addresses validation may reach: every public (globally routable
/// unicast) address, plus the ranges an operator allows explicitly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Non-public ranges allowed anyway: empty in production; loopback for
    /// the all-in-one `kiln`, whose challenge servers run on the laptop.
    pub also_allowed: Vec<IpNet>,
}

impl AddressPolicy {
    /// Only public addresses (the production default).
    pub fn public_only() -> AddressPolicy {
        AddressPolicy::default()
    }

    /// Public addresses and loopback (127.0.0.0/8, ::1).
    pub fn public_and_loopback() -> AddressPolicy {
        AddressPolicy {
            also_allowed: vec![
                IpNet::V4(Ipv4Net::new(Ipv4Addr::new(127, 0, 0, 0), 8).expect("prefix")),
                IpNet::V6(Ipv6Net::new(Ipv6Addr::LOCALHOST, 128).expect("prefix")),
            ],
        }
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.also_allowed.iter().any(|net| net.contains(&ip))
    }
}

/// True for a globally routable unicast address: the one table of them,
/// which also decides which IP identifiers Kiln certifies.
pub use domain::ip_address::is_public;

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_non_public_range_is_refused() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.10",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.251",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:8.8.8.8",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:a00:1::",
            "3fff::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(!is_public(ip(s)), "{s} must not be public");
            assert!(!AddressPolicy::public_only().permits(ip(s)), "{s}");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.3.1",
            "192.169.0.1",
            "198.20.0.1",
            "223.255.255.254",
            "2600::1",
            "2a00:1450::1",
            "2001:4860:4860::8888",
        ] {
            assert!(is_public(ip(s)), "{s} is public");
        }
    }

    #[test]
    fn loopback_is_allowed_only_where_configured() {
        let laptop = AddressPolicy::public_and_loopback();
        for s in ["127.0.0.1", "127.1.2.3", "::1"] {
            assert!(laptop.permits(ip(s)), "{s}");
            assert!(!AddressPolicy::public_only().permits(ip(s)), "{s}");
        }
        for s in ["10.0.0.1", "169.254.169.254", "::ffff:127.0.0.1", "fe80::1"] {
            assert!(!laptop.permits(ip(s)), "loopback allows no more: {s}");
        }
        assert!(laptop.permits(ip("8.8.8.8")));
    }
}
