//! IP addresses: which are public (the validator connects only to those,
//! and Kiln certifies only those), and IP-address identifiers (RFC 8738):
//! their one text form and the reverse-DNS name tls-alpn-01 sends as SNI.

use crate::{Problem, ProblemKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 ranges that are not public (IANA special-purpose registry, RFC 6890
/// and successors): never a validation target, never in a certificate
/// (BR 7.1.2.7.12: no Reserved IP Address).
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
        IpAddr::V4(v4) => !NON_PUBLIC_V4.iter().any(|&(net, len)| {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(v4) & mask == u32::from(net) & mask
        }),
        IpAddr::V6(v6) => !NON_PUBLIC_V6.iter().any(|&(net, len)| {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(v6) & mask == u128::from(net) & mask
        }),
    }
}

/// Checks a requested `ip` identifier (RFC 8738 §3): the address in its one
/// text form (dotted decimal; RFC 5952 for IPv6: lowercase, no leading
/// zeros, the longest zero run as `::`), no zone, and public — loopback too
/// when `allow_loopback` (the all-in-one, so a client author can get a
/// certificate for 127.0.0.1). `Err` is the `rejectedIdentifier` problem.
pub fn check_ip_identifier(raw: &str, allow_loopback: bool) -> Result<IpAddr, Problem> {
    let reject =
        |why: &str| Problem::new(ProblemKind::RejectedIdentifier, format!("{raw:?} {why}"));
    let ip: IpAddr = raw
        .parse()
        .map_err(|_| reject("is not an IP address (no zone, no brackets)"))?;
    let canonical = ip.to_string();
    if canonical != raw {
        return Err(reject(&format!(
            "is not in canonical form (RFC 8738 §3, RFC 5952): write {canonical:?}"
        )));
    }
    let admitted = is_public(ip) || (allow_loopback && ip.is_loopback());
    if !admitted {
        return Err(reject(
            "is a reserved address (IANA special-purpose); no certificate may name it (BR 7.1.2.7.12)",
        ));
    }
    Ok(ip)
}

/// The address an iPAddress GeneralName holds (RFC 5280 §4.2.1.6: 4 octets
/// for IPv4, 16 for IPv6); `None` for any other length.
pub fn from_octets(octets: &[u8]) -> Option<IpAddr> {
    match octets.len() {
        4 => <[u8; 4]>::try_from(octets).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(octets).ok().map(IpAddr::from),
        _ => None,
    }
}

/// The reverse-DNS name of `ip` (`in-addr.arpa` or `ip6.arpa`, no trailing
/// dot): the SNI of a tls-alpn-01 validation of an IP identifier (RFC 8738
/// §6), since SNI cannot carry an address (RFC 6066 §3).
pub fn reverse_dns_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            name.push_str("ip6.arpa");
            name
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_public_addresses_are_identifiers() {
        for ok in ["8.8.8.8", "2606:4700::1111", "1.1.1.1"] {
            assert_eq!(check_ip_identifier(ok, false).unwrap().to_string(), ok);
        }
        for (bad, why) in [
            ("2606:4700:0::1111", "canonical"),
            ("2606:4700::1111%eth0", "not an IP"),
            ("[2606:4700::1111]", "not an IP"),
            ("2606:4700::ABCD", "canonical"),
            ("008.8.8.8", "not an IP"),
            ("10.0.0.1", "reserved"),
            ("192.0.2.1", "reserved"),
            ("::ffff:8.8.8.8", "reserved"),
            ("fe80::1", "reserved"),
            ("127.0.0.1", "reserved"),
            ("example.com", "not an IP"),
        ] {
            let problem = check_ip_identifier(bad, false).unwrap_err();
            assert_eq!(problem.kind, ProblemKind::RejectedIdentifier);
            assert!(problem.detail.contains(why), "{bad}: {}", problem.detail);
        }
        // The all-in-one admits loopback, and only loopback, besides.
        assert!(check_ip_identifier("127.0.0.1", true).is_ok());
        assert!(check_ip_identifier("::1", true).is_ok());
        assert!(check_ip_identifier("10.0.0.1", true).is_err());
    }

    #[test]
    fn reverse_names_as_rfc_8738_writes_them() {
        assert_eq!(
            reverse_dns_name("192.0.2.5".parse().unwrap()),
            "5.2.0.192.in-addr.arpa"
        );
        assert_eq!(
            reverse_dns_name("2001:db8::1".parse().unwrap()),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }

    #[test]
    fn octets_of_4_or_16_are_addresses() {
        assert_eq!(
            from_octets(&[127, 0, 0, 1]),
            Some("127.0.0.1".parse().unwrap())
        );
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(from_octets(&v6), Some("::1".parse().unwrap()));
        assert_eq!(from_octets(&[1, 2, 3]), None);
    }

    #[test]
    fn ranges_are_matched_by_prefix() {
        assert!(!is_public("172.31.255.255".parse().unwrap()));
        assert!(is_public("172.32.0.0".parse().unwrap()));
        assert!(!is_public("2001:db8:ffff::1".parse().unwrap()));
        assert!(is_public("2001:4860::8888".parse().unwrap()));
    }
}
