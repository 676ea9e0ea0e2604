//! The network checks of ACME challenges: http-01 and dns-01 (RFC 8555 §8.3,
//! §8.4) and tls-alpn-01 (RFC 8737). Each returns `Ok(())` or the problem to
//! store on the challenge. Queueing and state changes live elsewhere.
//!
//! Everything received here (HTTP bodies, TXT records, certificates) is
//! untrusted: it is size-bounded, never panics the validator, and is quoted
//! back to the client only escaped and truncated.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dns::{Dns, DnsError};
use domain::{Identifier, Problem, ProblemKind};
use openssl::ssl::{Ssl, SslContext, SslMethod, SslVerifyMode, SslVersion};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use crate::address::AddressPolicy;
use crate::connect::connect;
use crate::http01::{self, FetchError, bounded};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Where challenge servers listen on the validated host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChallengePorts {
    /// 80 in production, 5002 on a laptop.
    pub http01: u16,
    /// 443 in production, 5001 on a laptop.
    pub tlsalpn01: u16,
}

impl ChallengePorts {
    pub const PRODUCTION: ChallengePorts = ChallengePorts {
        http01: 80,
        tlsalpn01: 443,
    };
}

/// Whole http-01 exchange, redirects included.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// A key authorization is ~90 bytes; anything past this is not one.
const MAX_BODY: usize = 4096;
/// Whole tls-alpn-01 exchange: connect and handshake.
const TLS_TIMEOUT: Duration = Duration::from_secs(10);
const ACME_TLS_1: &[u8] = b"acme-tls/1";
/// id-pe-acmeIdentifier (RFC 8737 §6.1).
const ACME_IDENTIFIER_OID: &str = "1.3.6.1.5.5.7.1.31";
/// Longest piece of received data quoted in a problem detail.
const QUOTE_MAX: usize = 64;

pub(crate) fn problem(kind: ProblemKind, domain: &str, detail: String) -> Problem {
    Problem::new(kind, detail).for_identifier(Identifier::from_authz_value(domain))
}

/// An internal failure (our bug or our environment): logged, not shown.
fn internal(domain: &str, what: &str, err: impl std::fmt::Display) -> Problem {
    tracing::error!(domain, error = %err, "{what}");
    Problem::internal().for_identifier(Identifier::from_authz_value(domain))
}

/// `domain` as a URL's host: an IPv6 identifier in brackets (RFC 3986),
/// which is also the Host header RFC 8738 §5 asks for.
fn url_host(domain: &str) -> String {
    match domain.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("[{domain}]"),
        Err(_) => domain.to_string(),
    }
}

pub(crate) fn dns_problem(domain: &str, what: &str, err: &DnsError) -> Problem {
    let retry = if err.is_transient() {
        "; this may be temporary, please retry"
    } else {
        ""
    };
    problem(ProblemKind::Dns, domain, format!("{what}: {err}{retry}"))
}

/// Received bytes for a problem detail: lossy, escaped, bounded.
pub(crate) fn quote(raw: &[u8]) -> String {
    let head = &raw[..raw.len().min(QUOTE_MAX * 4)];
    let text = String::from_utf8_lossy(head);
    let mut shown: String = text.chars().take(QUOTE_MAX).collect();
    if head.len() < raw.len() || text.chars().count() > QUOTE_MAX {
        shown.push('…');
    }
    format!("{shown:?}")
}

/// base64url(SHA-256(key authorization)), the dns-01 TXT value (§8.4).
pub fn dns01_txt_value(key_authorization: &str) -> String {
    URL_SAFE_NO_PAD.encode(openssl::sha::sha256(key_authorization.as_bytes()))
}

// ---------------------------------------------------------------- http-01

/// RFC 8555 §8.3: GET `http://{domain}:{port}/.well-known/acme-challenge/{token}`
/// and compare the body (whitespace-trimmed) to the key authorization.
///
/// Names are resolved with `dns` (never the system resolver), including the
/// targets of redirects (see [`crate::http01`]); an IP identifier is
/// connected to as it is (RFC 8738 §5), the address policy applying alike.
pub async fn validate_http01(
    dns: &Dns,
    ports: &ChallengePorts,
    addresses: &AddressPolicy,
    domain: &str,
    token: &str,
    key_authorization: &str,
) -> Result<(), Problem> {
    // The token is ours (base64url); anything else would bend the URL.
    if token.is_empty()
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(internal(domain, "http-01 token is not base64url", token));
    }
    let host = url_host(domain);
    let url = format!(
        "http://{host}:{}/.well-known/acme-challenge/{token}",
        ports.http01
    );
    let parsed = url::Url::parse(&url).map_err(|e| internal(domain, "bad http-01 URL", e))?;
    if parsed.host_str() != Some(host.as_str()) {
        return Err(internal(
            domain,
            "http-01 URL host differs from domain",
            &url,
        ));
    }

    let fetched = tokio::time::timeout(
        HTTP_TIMEOUT,
        http01::get(dns, ports, addresses, parsed, MAX_BODY),
    )
    .await
    .map_err(|_| {
        problem(
            ProblemKind::Connection,
            domain,
            format!("timeout while fetching {url}"),
        )
    })?
    .map_err(|e| fetch_problem(domain, &url, e))?;
    // Redirects make the URL the server's choice: keep it short.
    let final_url = bounded(fetched.url.as_str());
    let status = fetched.status;
    if status != hyper::StatusCode::OK {
        return Err(problem(
            ProblemKind::Unauthorized,
            domain,
            format!("invalid response from {final_url}: HTTP {status}"),
        ));
    }
    let body = fetched.body;
    if body.len() > MAX_BODY {
        return Err(problem(
            ProblemKind::IncorrectResponse,
            domain,
            format!(
                "response from {final_url} is longer than {MAX_BODY} bytes; starts with {}",
                quote(&body)
            ),
        ));
    }
    if body.trim_ascii() != key_authorization.as_bytes() {
        return Err(problem(
            ProblemKind::IncorrectResponse,
            domain,
            format!(
                "the key authorization from {final_url} is wrong: received {}",
                quote(body.trim_ascii())
            ),
        ));
    }
    Ok(())
}

/// The problem for an http-01 fetch that got no usable answer.
fn fetch_problem(domain: &str, url: &str, err: FetchError) -> Problem {
    match err {
        FetchError::Dns { host, error } if host == domain => {
            dns_problem(domain, &format!("cannot resolve {domain}"), &error)
        }
        FetchError::Dns { error, .. } => dns_problem(
            domain,
            &format!("cannot resolve a host while fetching {url}"),
            &error,
        ),
        FetchError::Connect(e) => problem(
            ProblemKind::Connection,
            domain,
            format!("cannot connect while fetching {url}: {e}"),
        ),
        FetchError::Redirect(why) => problem(
            ProblemKind::Connection,
            domain,
            format!("bad redirect while fetching {url}: {why}"),
        ),
        FetchError::Tls(why) => problem(
            ProblemKind::Tls,
            domain,
            format!("TLS error while fetching {url}: {why}"),
        ),
        FetchError::Protocol(why) => problem(
            ProblemKind::Connection,
            domain,
            format!("error while fetching {url}: {}", bounded(&why)),
        ),
    }
}

// ----------------------------------------------------------------- dns-01

/// RFC 8555 §8.4: a TXT record at `_acme-challenge.{domain}` must equal
/// base64url(SHA-256(key authorization)). `domain` is the base name (no `*.`).
pub async fn validate_dns01(
    dns: &Dns,
    domain: &str,
    key_authorization: &str,
) -> Result<(), Problem> {
    let name = format!("_acme-challenge.{domain}");
    validate_txt_digest(dns, domain, &name, key_authorization).await
}

/// A TXT record at `name` (which proves control of `domain`) must equal
/// base64url(SHA-256(key authorization)): dns-01 and dns-account-01.
pub(crate) async fn validate_txt_digest(
    dns: &Dns,
    domain: &str,
    name: &str,
    key_authorization: &str,
) -> Result<(), Problem> {
    let expected = dns01_txt_value(key_authorization);
    let txts = match dns.lookup_txt(name).await {
        Ok(txts) => txts,
        Err(DnsError::NoRecords(_)) => {
            return Err(problem(
                ProblemKind::Dns,
                domain,
                format!("no TXT record found at {name}"),
            ));
        }
        Err(e) => {
            return Err(dns_problem(
                domain,
                &format!("TXT lookup at {name} failed"),
                &e,
            ));
        }
    };
    if txts.contains(&expected) {
        return Ok(());
    }
    let first = txts
        .first()
        .map(|t| quote(t.as_bytes()))
        .unwrap_or_default();
    Err(problem(
        ProblemKind::Unauthorized,
        domain,
        format!(
            "incorrect TXT record at {name}: {} record(s) found, none matches the key authorization digest (first: {first})",
            txts.len()
        ),
    ))
}

// ------------------------------------------------------------ tls-alpn-01

/// RFC 8737: TLS to `{ip}:{port}` with SNI `domain` and ALPN `acme-tls/1`
/// only; the self-signed certificate must carry exactly the one dNSName
/// `domain` and a critical acmeIdentifier holding SHA-256(key authorization).
/// An IP identifier (RFC 8738 §6): TLS to the address itself, SNI its
/// reverse-DNS name, and exactly the one iPAddress SAN.
pub async fn validate_tlsalpn01(
    dns: &Dns,
    ports: &ChallengePorts,
    addresses: &AddressPolicy,
    domain: &str,
    key_authorization: &str,
) -> Result<(), Problem> {
    let address = domain.parse::<std::net::IpAddr>().ok();
    let (ips, sni) = match address {
        Some(ip) => (vec![ip], domain::ip_address::reverse_dns_name(ip)),
        None => {
            let ips = dns
                .lookup_ip(domain)
                .await
                .map_err(|e| dns_problem(domain, &format!("cannot resolve {domain}"), &e))?;
            (ips, domain.to_string())
        }
    };
    let port = ports.tlsalpn01;
    let exchange = async {
        let (tcp, addr) = connect(&ips, port, addresses).await.map_err(|e| {
            problem(
                ProblemKind::Connection,
                domain,
                format!("cannot connect to {domain}: {e}"),
            )
        })?;
        let der = tls_alpn_handshake(domain, &sni, tcp, addr).await?;
        check_acme_certificate(&der, domain, address, key_authorization)
    };
    tokio::time::timeout(TLS_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(problem(
                ProblemKind::Connection,
                domain,
                format!("timeout during tls-alpn-01 exchange with {domain}:{port}"),
            ))
        })
}

/// Handshake offering only `acme-tls/1`; returns the peer certificate (DER).
async fn tls_alpn_handshake(
    domain: &str,
    sni: &str,
    tcp: TcpStream,
    addr: SocketAddr,
) -> Result<Vec<u8>, Problem> {
    // A fixed description: OpenSSL's error text (with its source paths)
    // goes to the log, not into the challenge's error.
    let tls_err = |what: &str, e: &dyn std::fmt::Display| {
        tracing::info!(domain, %addr, error = %e, "tls-alpn-01: {what}");
        problem(
            ProblemKind::Tls,
            domain,
            format!("{what} with {addr} (SNI {sni})"),
        )
    };
    // A bare context, not SslConnector: no trust store to load, since the
    // challenge certificate is self-signed by design and checked by us.
    let setup = || -> Result<Ssl, openssl::error::ErrorStack> {
        let mut ctx = SslContext::builder(SslMethod::tls_client())?;
        ctx.set_verify(SslVerifyMode::NONE);
        // RFC 8737 §4: TLS 1.2 or higher.
        ctx.set_min_proto_version(Some(SslVersion::TLS1_2))?;
        let mut alpn = vec![ACME_TLS_1.len() as u8];
        alpn.extend_from_slice(ACME_TLS_1);
        ctx.set_alpn_protos(&alpn)?;
        let mut ssl = Ssl::new(&ctx.build())?;
        ssl.set_hostname(sni)?; // SNI
        Ok(ssl)
    };
    let ssl = setup().map_err(|e| internal(domain, "TLS setup", e))?;
    let mut stream = SslStream::new(ssl, tcp).map_err(|e| internal(domain, "TLS setup", e))?;
    Pin::new(&mut stream)
        .connect()
        .await
        .map_err(|e| tls_err("TLS handshake failed", &e))?;

    let ssl = stream.ssl();
    if ssl.selected_alpn_protocol() != Some(ACME_TLS_1) {
        return Err(problem(
            ProblemKind::Unauthorized,
            domain,
            format!("{addr} (SNI {domain}) did not negotiate ALPN protocol \"acme-tls/1\""),
        ));
    }
    let cert = ssl
        .peer_certificate()
        .ok_or_else(|| tls_err("no certificate", &"the server sent none"))?;
    cert.to_der()
        .map_err(|e| tls_err("unusable certificate", &e))
}

/// RFC 8737 §3: exactly one SAN, the dNSName `domain` (for an IP
/// identifier, the iPAddress `address`, RFC 8738 §6); a critical
/// acmeIdentifier whose value is the DER OCTET STRING of SHA-256(key authz).
fn check_acme_certificate(
    der: &[u8],
    domain: &str,
    address: Option<std::net::IpAddr>,
    key_authorization: &str,
) -> Result<(), Problem> {
    let unauthorized = |why: String| {
        problem(
            ProblemKind::Unauthorized,
            domain,
            format!("incorrect tls-alpn-01 certificate for {domain}: {why}"),
        )
    };
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| {
        problem(
            ProblemKind::Tls,
            domain,
            format!("cannot parse the tls-alpn-01 certificate for {domain}: {e}"),
        )
    })?;

    let san = cert
        .subject_alternative_name()
        .map_err(|e| unauthorized(format!("bad subjectAltName extension: {e}")))?
        .ok_or_else(|| unauthorized("no subjectAltName extension".into()))?;
    let octets = address.map(|ip| match ip {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
    });
    let (kind, wanted) = match address {
        Some(_) => ("iPAddress", domain),
        None => ("dNSName", domain),
    };
    match (san.value.general_names.as_slice(), &octets) {
        ([GeneralName::DNSName(name)], None) if name.eq_ignore_ascii_case(domain) => {}
        ([GeneralName::IPAddress(got)], Some(octets)) if got == octets => {}
        (names, _) => {
            let shown: Vec<String> = names
                .iter()
                .take(5)
                .map(|n| match n {
                    GeneralName::DNSName(d) => quote(d.as_bytes()),
                    other => format!("{other:?}").chars().take(QUOTE_MAX).collect(),
                })
                .collect();
            return Err(unauthorized(format!(
                "subjectAltName must be exactly the {kind} {wanted}, got {} name(s): {}",
                names.len(),
                shown.join(", ")
            )));
        }
    }

    let ext = match cert
        .extensions()
        .iter()
        .filter(|e| e.oid.to_id_string() == ACME_IDENTIFIER_OID)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [ext] => *ext,
        [] => return Err(unauthorized("no acmeIdentifier extension".into())),
        _ => {
            return Err(unauthorized(
                "more than one acmeIdentifier extension".into(),
            ));
        }
    };
    if !ext.critical {
        return Err(unauthorized(
            "the acmeIdentifier extension is not critical".into(),
        ));
    }
    let digest = openssl::sha::sha256(key_authorization.as_bytes());
    // DER OCTET STRING: tag 0x04, length 32, then the digest.
    let mut expected = vec![0x04, 0x20];
    expected.extend_from_slice(&digest);
    if ext.value != expected.as_slice() {
        return Err(problem(
            ProblemKind::IncorrectResponse,
            domain,
            format!(
                "the acmeIdentifier in the tls-alpn-01 certificate for {domain} does not match the key authorization"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns01_value_matches_rfc_example_shape() {
        let v = dns01_txt_value("token.thumbprint");
        assert_eq!(v.len(), 43);
        assert!(!v.contains('=') && !v.contains('+') && !v.contains('/'));
    }

    #[test]
    fn quote_is_bounded_and_escaped() {
        let q = quote(&[b'a'; 10_000]);
        assert!(q.len() < QUOTE_MAX + 10, "{q}");
        assert_eq!(quote(b"x\ny"), "\"x\\ny\"");
        assert_eq!(quote(b"\xff"), "\"\u{fffd}\"");
        assert_eq!(bounded(&"é".repeat(300)).chars().count(), 201);
        assert_eq!(bounded("short"), "short");
    }

    #[test]
    fn garbage_certificate_is_a_tls_problem_not_a_panic() {
        for der in [&b""[..], b"\x30\x82\xff\xff", &[0u8; 100]] {
            let p = check_acme_certificate(der, "a.com", None, "k.t").unwrap_err();
            assert_eq!(p.kind, ProblemKind::Tls, "{p}");
        }
    }
}
