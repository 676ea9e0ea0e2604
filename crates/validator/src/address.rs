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

/// IPv4 ranges that are not public (IANA special-purpose registry, RFC 6890
/// and successors): never a validation target.
const NON_PUBLIC_V4: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),       // "this network"
    (Ipv4Addr::new(10, 0, 0, 0), 8),      // private (RFC 1918)
    (Ipv4Addr::new(100, 64, 0, 0), 10),   // carrier-grade NAT (RFC 6598)
    (Ipv4Addr::new(127, 0, 0, 0), 8),     // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16),  // link-local, cloud metadata
    (Ipv4Addr::new(172, 16, 0, 0), 12),   // private (RFC 1918)
    (Ipv4Addr::new(192, 0, 0, 0), 24),    // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24),    // documentation (TEST-NET-1)
    (Ipv4Addr::new(192, 88, 99, 0), 24),  // 6to4 relay anycast (deprecated)
    (Ipv4Addr::new(192, 168, 0, 0), 16),  // private (RFC 1918)
    (Ipv4Addr::new(198, 18, 0, 0), 15),   // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation (TEST-NET-2)
    (Ipv4Addr::new(203, 0, 113, 0), 24),  // documentation (TEST-NET-3)
    (Ipv4Addr::new(224, 0, 0, 0), 4),     // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),     // reserved, and broadcast
];

/// IPv6 ranges that are not public. The ones that embed an IPv4 address
/// (mapped, compatible, NAT64, 6to4, Teredo) are refused whole: through
/// them a public-looking IPv6 address can reach a private IPv4 host.
const NON_PUBLIC_V6: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96), // unspecified, loopback, IPv4-compatible
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96), // IPv4-mapped
    (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96), // NAT64 (RFC 6052)
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48), // local-use NAT64 (RFC 8215)
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64), // discard-only
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23), // IETF protocol assignments, Teredo
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16), // 6to4
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20), // documentation (RFC 9637)
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7), // unique local
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10), // link-local
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10), // site-local (deprecated)
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8), // multicast
];

/// True for a globally routable unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !NON_PUBLIC_V4
            .iter()
            .any(|&(net, len)| Ipv4Net::new(net, len).is_ok_and(|n| n.contains(&v4))),
        IpAddr::V6(v6) => !NON_PUBLIC_V6
            .iter()
            .any(|&(net, len)| Ipv6Net::new(net, len).is_ok_and(|n| n.contains(&v6))),
    }
}

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
