//! Opening the TCP connection a challenge is validated over.
//!
//! Like Let's Encrypt, a name with AAAA records is tried over IPv6 first and
//! over IPv4 only if that connection fails; one address of each family is
//! tried, never every record of a long answer (each try can take the whole
//! connect timeout). An address the [`AddressPolicy`] forbids is never
//! connected to: it is reported as refused, and a permitted address of the
//! answer is tried instead.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::address::AddressPolicy;

/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why no connection could be made: one entry per address tried.
#[derive(Debug)]
pub struct ConnectError {
    pub failures: Vec<(SocketAddr, String)>,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.failures.is_empty() {
            return f.write_str("no address to connect to");
        }
        let tried: Vec<String> = self
            .failures
            .iter()
            .map(|(addr, why)| format!("{addr}: {why}"))
            .collect();
        f.write_str(&tried.join("; "))
    }
}

/// Why an address was not tried (fixed text: it goes to the client).
pub const NOT_PUBLIC: &str = "not a public address; validation connects only to public addresses";

/// The addresses to try, in order: the first IPv6 address, then the first
/// IPv4 address.
pub fn connection_order(ips: &[IpAddr]) -> Vec<IpAddr> {
    let v6 = ips.iter().find(|ip| ip.is_ipv6());
    let v4 = ips.iter().find(|ip| ip.is_ipv4());
    v6.into_iter().chain(v4).copied().collect()
}

/// Connects to `port` on the first address (in [`connection_order`] of the
/// addresses `policy` permits) that accepts. Forbidden addresses are
/// listed in the error, never connected to.
pub async fn connect(
    ips: &[IpAddr],
    port: u16,
    policy: &AddressPolicy,
) -> Result<(TcpStream, SocketAddr), ConnectError> {
    let (permitted, forbidden): (Vec<IpAddr>, Vec<IpAddr>) =
        ips.iter().partition(|ip| policy.permits(**ip));
    let mut failures: Vec<(SocketAddr, String)> = connection_order(&forbidden)
        .into_iter()
        .map(|ip| (SocketAddr::new(ip, port), NOT_PUBLIC.to_string()))
        .collect();
    for ip in connection_order(&permitted) {
        let addr = SocketAddr::new(ip, port);
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                // Requests are small and answered at once: no Nagle delay.
                let _ = tcp.set_nodelay(true);
                return Ok((tcp, addr));
            }
            Ok(Err(e)) => failures.push((addr, e.kind().to_string())),
            Err(_) => failures.push((addr, "timed out".into())),
        }
    }
    Err(ConnectError { failures })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_first_then_one_ipv4() {
        let ips: Vec<IpAddr> = ["192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let order: Vec<String> = connection_order(&ips)
            .iter()
            .map(|ip| ip.to_string())
            .collect();
        assert_eq!(order, ["2001:db8::1", "192.0.2.1"]);
        let only_v4: Vec<IpAddr> = vec!["192.0.2.9".parse().unwrap()];
        assert_eq!(connection_order(&only_v4), only_v4);
        assert!(connection_order(&[]).is_empty());
    }

    #[tokio::test]
    async fn falls_back_to_ipv4_when_ipv6_refuses() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Nothing listens on [::1]:port (the listener is IPv4 only).
        let ips: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let (_tcp, addr) = connect(&ips, port, &AddressPolicy::public_and_loopback())
            .await
            .unwrap();
        assert_eq!(addr, SocketAddr::from(([127, 0, 0, 1], port)));
    }

    #[tokio::test]
    async fn names_every_address_tried_when_none_accepts() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = connect(
            &["127.0.0.1".parse().unwrap()],
            port,
            &AddressPolicy::public_and_loopback(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.failures.len(), 1);
        assert!(err.to_string().contains("refused"), "{err}");
    }

    /// A forbidden address is never connected to: the listener on it sees
    /// no connection, and the error says why.
    #[tokio::test]
    async fn never_connects_to_a_forbidden_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let err = connect(
            &["127.0.0.1".parse().unwrap()],
            port,
            &AddressPolicy::public_only(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.failures.len(), 1);
        assert!(err.to_string().contains(NOT_PUBLIC), "{err}");
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "the forbidden address got a connection");
    }
}
