//! Every DNS lookup Kiln makes (A/AAAA, TXT, CAA), and CAA policy ([`caa`]).
//!
//! All lookups go through [`Dns`] so that a deployment (or a test) decides
//! which server answers: a configured resolver, the system's, a test server,
//! or (the all-in-one `kiln` only) nobody at all ([`DnsMode::Loopback`]).

#![forbid(unsafe_code)]

pub mod caa;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{Resolver, ResolverBuilder, TokioResolver};

/// Per-try timeout handed to hickory. With `ATTEMPTS` retries a dead server
/// costs `(1 + ATTEMPTS) * TRY_TIMEOUT`; [`LOOKUP_DEADLINE`] caps it anyway.
const TRY_TIMEOUT: Duration = Duration::from_secs(2);
const ATTEMPTS: usize = 1;
/// Hard cap on one public lookup, whatever hickory's retry logic does.
const LOOKUP_DEADLINE: Duration = Duration::from_secs(5);

/// Where lookups go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsMode {
    /// No DNS: every name resolves to 127.0.0.1, no TXT and no CAA records
    /// (the laptop default).
    Loopback,
    /// Every lookup (A/AAAA, TXT, CAA) goes to this server (UDP, TCP fallback
    /// on truncation).
    Server(SocketAddr),
    /// The machine's resolvers (`/etc/resolv.conf`): what the production
    /// binaries use when no server is configured. Never [`DnsMode::Loopback`].
    System,
}

/// A lookup failure. Every message names the query.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// NXDOMAIN, or the name exists without records of that type (NODATA).
    #[error("{0}")]
    NoRecords(String),
    #[error("{0}")]
    ServFail(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Other(String),
}

impl DnsError {
    /// SERVFAIL and timeouts may well succeed if asked again later.
    pub fn is_transient(&self) -> bool {
        matches!(self, DnsError::ServFail(_) | DnsError::Timeout(_))
    }
}

/// One CAA record as received: flags reduced to the critical bit, the tag as
/// sent (compare case-insensitively) and the raw value (untrusted bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaaRecord {
    pub critical: bool,
    pub tag: String,
    pub value: Vec<u8>,
}

impl CaaRecord {
    pub fn new(critical: bool, tag: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        CaaRecord {
            critical,
            tag: tag.into(),
            value: value.into(),
        }
    }
}

/// Kiln's DNS client. Cheap to clone (the resolver and its cache are shared).
#[derive(Clone)]
pub struct Dns {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Loopback,
    // Boxed behind an Arc: the resolver is large and Loopback is empty.
    Server(Arc<TokioResolver>),
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Loopback => f.write_str("Dns(Loopback)"),
            Inner::Server(_) => f.write_str("Dns(Server)"),
        }
    }
}

/// Kiln's resolver options on any set of servers, then the resolver.
fn build(
    mut builder: ResolverBuilder<TokioRuntimeProvider>,
    servers: &str,
) -> Result<TokioResolver, DnsError> {
    let opts = builder.options_mut();
    opts.timeout = TRY_TIMEOUT;
    opts.attempts = ATTEMPTS;
    // /etc/hosts must not answer for names we validate.
    opts.use_hosts_file = ResolveHosts::Never;
    // We always query fully-qualified names; no search list.
    opts.ndots = 0;
    builder
        .build()
        .map_err(|e| DnsError::Other(format!("cannot build a resolver for {servers}: {e}")))
}

impl Dns {
    pub fn new(mode: DnsMode) -> Result<Dns, DnsError> {
        let inner = match mode {
            DnsMode::Loopback => Inner::Loopback,
            DnsMode::Server(addr) => {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                // hickory 0.26 keeps the port on each connection, not on the server.
                for conn in &mut ns.connections {
                    conn.port = addr.port();
                }
                let config = ResolverConfig::from_name_servers(vec![ns]);
                let builder =
                    Resolver::builder_with_config(config, TokioRuntimeProvider::default());
                Inner::Server(Arc::new(build(builder, &addr.to_string())?))
            }
            DnsMode::System => {
                let builder = Resolver::builder_tokio().map_err(|e| {
                    DnsError::Other(format!(
                        "cannot read the system resolver configuration: {e}"
                    ))
                })?;
                Inner::Server(Arc::new(build(builder, "the system resolvers")?))
            }
        };
        Ok(Dns { inner })
    }

    /// A records, then AAAA records (both asked concurrently). An empty
    /// result is [`DnsError::NoRecords`].
    pub async fn lookup_ip(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        let resolver = match &self.inner {
            Inner::Loopback => return Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]),
            Inner::Server(r) => r,
        };
        let (v4, v6) = futures::join!(
            query(resolver, name, RecordType::A),
            query(resolver, name, RecordType::AAAA)
        );
        let mut addrs = Vec::new();
        let mut first_err = None;
        for result in [v4, v6] {
            match result {
                Ok(rdatas) => addrs.extend(rdatas.into_iter().filter_map(|rd| match rd {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })),
                Err(DnsError::NoRecords(_)) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        // One family answering is enough; a failure only matters if nothing answered.
        match (addrs.is_empty(), first_err) {
            (false, _) => Ok(addrs),
            (true, Some(e)) => Err(e),
            (true, None) => Err(DnsError::NoRecords(format!(
                "no A or AAAA records found for {name}"
            ))),
        }
    }

    /// TXT records at `name`, each record's character-strings concatenated
    /// (RFC 7208 §3.3 style). Non-UTF-8 bytes are replaced, not rejected.
    pub async fn lookup_txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let resolver = match &self.inner {
            Inner::Loopback => {
                return Err(DnsError::NoRecords(format!(
                    "no TXT records found for {name} (DNS is in loopback mode)"
                )));
            }
            Inner::Server(r) => r,
        };
        let txts: Vec<String> = query(resolver, name, RecordType::TXT)
            .await?
            .into_iter()
            .filter_map(|rd| match rd {
                RData::TXT(txt) => {
                    let bytes: Vec<u8> = txt
                        .txt_data
                        .iter()
                        .flat_map(|s| s.iter().copied())
                        .collect();
                    Some(String::from_utf8_lossy(&bytes).into_owned())
                }
                _ => None,
            })
            .collect();
        if txts.is_empty() {
            // e.g. only a CNAME came back
            return Err(DnsError::NoRecords(format!(
                "no TXT records found for {name}"
            )));
        }
        Ok(txts)
    }

    /// The CAA RRset at exactly `name` (no tree climbing; see
    /// [`caa::check`]). NXDOMAIN and NODATA are `Ok(vec![])`; SERVFAIL and
    /// timeouts are errors, because a CA must not treat them as "no CAA".
    pub async fn lookup_caa(&self, name: &str) -> Result<Vec<CaaRecord>, DnsError> {
        let resolver = match &self.inner {
            Inner::Loopback => return Ok(Vec::new()),
            Inner::Server(r) => r,
        };
        match query(resolver, name, RecordType::CAA).await {
            Ok(rdatas) => Ok(rdatas
                .into_iter()
                .filter_map(|rd| match rd {
                    RData::CAA(caa) => Some(CaaRecord {
                        critical: caa.issuer_critical,
                        tag: caa.tag,
                        value: caa.value,
                    }),
                    _ => None,
                })
                .collect()),
            Err(DnsError::NoRecords(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

/// One query of one type, answers filtered to that type (CNAMEs followed by
/// hickory are dropped), under a hard deadline.
async fn query(
    resolver: &TokioResolver,
    name: &str,
    rtype: RecordType,
) -> Result<Vec<RData>, DnsError> {
    let what = format!("{rtype} lookup for {name}");
    let mut fqdn = Name::from_ascii(name)
        .map_err(|e| DnsError::Other(format!("{what}: invalid name: {e}")))?;
    // Fully qualified: never let a search domain be appended.
    fqdn.set_fqdn(true);
    let lookup = match tokio::time::timeout(LOOKUP_DEADLINE, resolver.lookup(fqdn, rtype)).await {
        Err(_) => return Err(DnsError::Timeout(format!("{what} timed out"))),
        Ok(Err(e)) => return Err(classify(&what, &e)),
        Ok(Ok(lookup)) => lookup,
    };
    Ok(lookup
        .answers()
        .iter()
        .filter(|r| r.record_type() == rtype)
        .map(|r| r.data.clone())
        .collect())
}

fn classify(what: &str, e: &NetError) -> DnsError {
    if e.is_no_records_found() {
        // hickory reports both NXDOMAIN and NODATA this way.
        let kind = if e.is_nx_domain() {
            "NXDOMAIN"
        } else {
            "no records"
        };
        return DnsError::NoRecords(format!("{what}: {kind}"));
    }
    match e {
        NetError::Timeout => DnsError::Timeout(format!("{what} timed out")),
        NetError::Dns(HickoryDnsError::ResponseCode(ResponseCode::ServFail)) => {
            DnsError::ServFail(format!("{what}: SERVFAIL"))
        }
        NetError::Dns(HickoryDnsError::ResponseCode(code)) => {
            DnsError::Other(format!("{what}: server answered {code}"))
        }
        // The resolver's own text can name the CA's network (OS errors,
        // addresses): for the operator's log, not for a problem document.
        other => {
            tracing::warn!(lookup = what, error = %other, "DNS lookup failed");
            DnsError::Other(format!("{what} failed"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::testing::TestDnsServer;

    #[tokio::test]
    async fn loopback_resolves_everything_locally() {
        let dns = Dns::new(DnsMode::Loopback).unwrap();
        assert_eq!(
            dns.lookup_ip("anything.example").await.unwrap(),
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
        );
        assert!(matches!(
            dns.lookup_txt("_acme-challenge.a.com").await,
            Err(DnsError::NoRecords(_))
        ));
        assert_eq!(dns.lookup_caa("a.com").await.unwrap(), vec![]);
    }

    /// What `fake-dns` serves: one root wildcard answers A for any name, at
    /// any depth, and nothing else.
    #[tokio::test]
    async fn a_root_wildcard_answers_every_name() {
        let server = TestDnsServer::start().await;
        server.set_a("*", IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
        let dns = server.dns();
        for name in ["single", "a.com", "deep.sub.example.co.uk"] {
            assert_eq!(
                dns.lookup_ip(name).await.unwrap(),
                vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
                "{name}"
            );
        }
        assert!(matches!(
            dns.lookup_txt("_acme-challenge.a.com").await,
            Err(DnsError::NoRecords(_))
        ));
        assert_eq!(dns.lookup_caa("a.com").await.unwrap(), vec![]);
    }

    /// The production default reads the machine's resolver configuration;
    /// no query is sent here.
    #[test]
    fn the_system_resolver_is_built_from_resolv_conf() {
        let built = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async { Dns::new(DnsMode::System) });
        let dns = built.expect("the system resolver configuration is readable");
        assert_eq!(format!("{dns:?}"), "Dns(Server)");
    }

    #[tokio::test]
    async fn lookups_against_a_real_server() {
        let server = TestDnsServer::start().await;
        server
            .set_a("www.a.com", "192.0.2.1".parse().unwrap())
            .await;
        server
            .set_a("www.a.com", "2001:db8::1".parse().unwrap())
            .await;
        server.set_txt("_acme-challenge.a.com", "one").await;
        server.set_txt("_acme-challenge.a.com", "two").await;
        server
            .set_caa("a.com", true, "issue", "kiln.test; accounturi=x")
            .await;
        server.set_servfail("broken.a.com");
        let dns = server.dns();

        let ips = dns.lookup_ip("www.a.com").await.unwrap();
        assert_eq!(
            ips,
            [
                "192.0.2.1".parse::<IpAddr>().unwrap(),
                "2001:db8::1".parse().unwrap()
            ]
        );
        let err = dns.lookup_ip("nothing.a.com").await.unwrap_err();
        assert!(
            matches!(err, DnsError::NoRecords(ref m) if m.contains("nothing.a.com")),
            "{err:?}"
        );

        let mut txt = dns.lookup_txt("_acme-challenge.a.com").await.unwrap();
        txt.sort();
        assert_eq!(txt, ["one", "two"]);

        assert_eq!(
            dns.lookup_caa("a.com").await.unwrap(),
            [CaaRecord::new(
                true,
                "issue",
                b"kiln.test; accounturi=x".to_vec()
            )]
        );
        // NODATA (name exists with other types) and NXDOMAIN are both "no CAA".
        assert_eq!(dns.lookup_caa("www.a.com").await.unwrap(), vec![]);
        assert_eq!(dns.lookup_caa("nx.a.com").await.unwrap(), vec![]);

        let err = dns.lookup_caa("broken.a.com").await.unwrap_err();
        assert!(
            matches!(err, DnsError::ServFail(ref m) if m.contains("broken.a.com")),
            "{err:?}"
        );
        assert!(err.is_transient());
        let err = dns.lookup_ip("broken.a.com").await.unwrap_err();
        assert!(matches!(err, DnsError::ServFail(_)), "{err:?}");
        server.clear_servfail("broken.a.com");
        assert_eq!(dns.lookup_caa("broken.a.com").await.unwrap(), vec![]);
    }

    #[tokio::test]
    async fn a_dead_server_fails_within_five_seconds() {
        // A bound socket that never answers (and no TCP listener).
        let silent = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let dns = Dns::new(DnsMode::Server(silent.local_addr().unwrap())).unwrap();
        let start = Instant::now();
        let err = dns.lookup_caa("a.com").await.unwrap_err();
        let took = start.elapsed();
        assert!(
            took <= LOOKUP_DEADLINE + Duration::from_millis(500),
            "{took:?}"
        );
        assert!(err.is_transient(), "{err:?}");
        assert!(err.to_string().contains("a.com"), "{err}");
    }
}
