//! The HTTP exchange of http-01 (RFC 8555 §8.3), done here rather than by a
//! general-purpose client, so that Kiln decides every step: each host is
//! resolved through Kiln's [`Dns`] (never the system resolver), the address
//! connected to is chosen by [`crate::connect`], redirects are followed by
//! hand (at most [`MAX_REDIRECTS`], only to the challenge ports), and at most
//! `max_body` bytes are read.
//!
//! Nothing is built per validation but the connection itself: the TLS
//! context for redirects to https is made once per process. (A client built
//! per validation loaded the system trust store each time: 40 ms of CPU on a
//! runtime thread, most of Kiln's cost per order in the first benchmarks.)

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::LazyLock;

use bytes::Bytes;
use dns::{Dns, DnsError};
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use openssl::ssl::{Ssl, SslContext, SslMethod, SslVerifyMode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_openssl::SslStream;
use url::Url;

use crate::address::AddressPolicy;
use crate::challenge::ChallengePorts;
use crate::connect::{ConnectError, connect};

/// Redirects followed before giving up (Let's Encrypt's limit).
pub const MAX_REDIRECTS: usize = 10;
const USER_AGENT: &str = concat!("Kiln-validator/", env!("CARGO_PKG_VERSION"));

/// The final answer of an http-01 fetch.
#[derive(Debug)]
pub struct Response {
    /// Where it came from, after redirects.
    pub url: Url,
    pub status: StatusCode,
    /// At most `max_body + 1` bytes: one more than allowed means "too long".
    pub body: Vec<u8>,
}

#[derive(Debug)]
pub enum FetchError {
    /// `host` could not be resolved.
    Dns {
        host: String,
        error: DnsError,
    },
    Connect(ConnectError),
    /// A redirect Kiln does not follow, with the reason.
    Redirect(String),
    Tls(String),
    /// The peer did not speak HTTP/1.1 as expected.
    Protocol(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Dns { host, error } => write!(f, "cannot resolve {host}: {error}"),
            FetchError::Connect(e) => write!(f, "cannot connect: {e}"),
            FetchError::Redirect(why) => write!(f, "bad redirect: {why}"),
            FetchError::Tls(why) => write!(f, "TLS error: {why}"),
            FetchError::Protocol(why) => write!(f, "HTTP error: {why}"),
        }
    }
}

/// TLS for redirects to https, built once: no trust store and no
/// verification, since http-01 proves control of the host, not of a trusted
/// certificate (RFC 8555 §8.3 allows following such redirects).
static REDIRECT_TLS: LazyLock<Result<SslContext, openssl::error::ErrorStack>> =
    LazyLock::new(|| {
        let mut builder = SslContext::builder(SslMethod::tls_client())?;
        builder.set_verify(SslVerifyMode::NONE);
        Ok(builder.build())
    });

/// GETs `url`, following redirects allowed by `ports`, connecting only to
/// addresses `addresses` permits (on every hop). The caller bounds the whole
/// exchange in time.
pub async fn get(
    dns: &Dns,
    ports: &ChallengePorts,
    addresses: &AddressPolicy,
    mut url: Url,
    max_body: usize,
) -> Result<Response, FetchError> {
    let mut redirects = 0;
    loop {
        let hop = exchange(dns, addresses, &url, max_body).await?;
        let Some(location) = hop.location else {
            return Ok(Response {
                url,
                status: hop.status,
                body: hop.body,
            });
        };
        redirects += 1;
        if redirects > MAX_REDIRECTS {
            return Err(FetchError::Redirect(format!(
                "more than {MAX_REDIRECTS} redirects"
            )));
        }
        url = redirect_target(&url, &location, ports)?;
    }
}

/// Where a redirect leads, if Kiln follows it: http on the http-01 port or
/// https on the tls-alpn-01 port, like Let's Encrypt, so a redirect cannot
/// make the validator probe other services.
fn redirect_target(from: &Url, location: &str, ports: &ChallengePorts) -> Result<Url, FetchError> {
    let to = from.join(location).map_err(|e| {
        FetchError::Redirect(format!("unusable Location {}: {e}", bounded(location)))
    })?;
    let port = to.port_or_known_default();
    match to.scheme() {
        "http" if port == Some(ports.http01) => Ok(to),
        "https" if port == Some(ports.tlsalpn01) => Ok(to),
        "http" | "https" => Err(FetchError::Redirect(format!(
            "redirect to {} uses a port other than {} (http) or {} (https)",
            bounded(to.as_str()),
            ports.http01,
            ports.tlsalpn01
        ))),
        other => Err(FetchError::Redirect(format!(
            "redirect to unsupported scheme {other:?}"
        ))),
    }
}

/// A URL or header cut to a sane length for a message.
pub fn bounded(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// One request and its answer.
struct Hop {
    status: StatusCode,
    /// Set for a redirect status with a Location header.
    location: Option<String>,
    body: Vec<u8>,
}

async fn exchange(
    dns: &Dns,
    addresses: &AddressPolicy,
    url: &Url,
    max_body: usize,
) -> Result<Hop, FetchError> {
    let (host, ips) = match url.host() {
        Some(url::Host::Domain(name)) => {
            let ips = dns.lookup_ip(name).await.map_err(|error| FetchError::Dns {
                host: name.to_string(),
                error,
            })?;
            (name.to_string(), ips)
        }
        Some(url::Host::Ipv4(ip)) => (ip.to_string(), vec![IpAddr::V4(ip)]),
        Some(url::Host::Ipv6(ip)) => (format!("[{ip}]"), vec![IpAddr::V6(ip)]),
        None => return Err(FetchError::Redirect("URL without a host".into())),
    };
    let port = url
        .port_or_known_default()
        .ok_or_else(|| FetchError::Redirect("URL without a port".into()))?;
    let (tcp, _addr) = connect(&ips, port, addresses)
        .await
        .map_err(FetchError::Connect)?;
    let host_header = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.clone(),
    };
    let path = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    };
    let request = Request::get(path)
        .header(header::HOST, host_header)
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::ACCEPT, "*/*")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| FetchError::Protocol(e.to_string()))?;
    if url.scheme() == "https" {
        let tls = tls_connect(tcp, url.host_str().filter(|_| ips_are_not(&host))).await?;
        send(tls, request, max_body).await
    } else {
        send(tcp, request, max_body).await
    }
}

/// SNI carries names, never IP literals (RFC 6066 §3).
fn ips_are_not(host: &str) -> bool {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_err()
}

async fn tls_connect(
    tcp: tokio::net::TcpStream,
    sni: Option<&str>,
) -> Result<SslStream<tokio::net::TcpStream>, FetchError> {
    let context = REDIRECT_TLS
        .as_ref()
        .map_err(|e| FetchError::Tls(format!("setup: {e}")))?;
    let mut ssl = Ssl::new(context).map_err(|e| FetchError::Tls(format!("setup: {e}")))?;
    if let Some(name) = sni {
        ssl.set_hostname(name)
            .map_err(|e| FetchError::Tls(format!("setup: {e}")))?;
    }
    let mut stream =
        SslStream::new(ssl, tcp).map_err(|e| FetchError::Tls(format!("setup: {e}")))?;
    Pin::new(&mut stream)
        .connect()
        .await
        .map_err(|_| FetchError::Tls("handshake failed".into()))?;
    Ok(stream)
}

/// Sends `request` over a fresh HTTP/1.1 connection and reads the answer,
/// driving the connection in this task (no task per validation).
async fn send<IO>(
    io: IO,
    request: Request<Empty<Bytes>>,
    max_body: usize,
) -> Result<Hop, FetchError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let protocol = |e: hyper::Error| FetchError::Protocol(e.to_string());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(protocol)?;
    let work = async {
        let response = sender.send_request(request).await.map_err(protocol)?;
        let status = response.status();
        let location = status
            .is_redirection()
            .then(|| response.headers().get(header::LOCATION))
            .flatten()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let mut body = Vec::new();
        if location.is_none() {
            let mut stream = response.into_body();
            while body.len() <= max_body {
                match stream.frame().await {
                    None => break,
                    Some(frame) => {
                        if let Ok(data) = frame.map_err(protocol)?.into_data() {
                            let room = max_body + 1 - body.len();
                            body.extend_from_slice(&data[..data.len().min(room)]);
                        }
                    }
                }
            }
        }
        Ok(Hop {
            status,
            location,
            body,
        })
    };
    tokio::pin!(work, connection);
    let mut connection_done = false;
    loop {
        tokio::select! {
            hop = &mut work => return hop,
            ended = &mut connection, if !connection_done => {
                connection_done = true;
                ended.map_err(protocol)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> ChallengePorts {
        ChallengePorts {
            http01: 80,
            tlsalpn01: 443,
        }
    }

    #[test]
    fn redirects_only_to_the_challenge_ports() {
        let from = Url::parse("http://a.test/.well-known/acme-challenge/t").unwrap();
        let ok = |loc: &str| redirect_target(&from, loc, &ports()).map(|u| u.to_string());
        assert_eq!(ok("/x").unwrap(), "http://a.test/x");
        assert_eq!(ok("https://b.test/y").unwrap(), "https://b.test/y");
        assert_eq!(ok("http://b.test:80/y").unwrap(), "http://b.test/y");
        let err = |loc: &str| {
            redirect_target(&from, loc, &ports())
                .unwrap_err()
                .to_string()
        };
        assert!(err("http://b.test:8080/").contains("port other than"));
        assert!(err("https://b.test:80/").contains("port other than"));
        assert!(err("ftp://b.test/").contains("scheme"));
        assert!(err("http://[::1").contains("unusable Location"));
    }

    #[test]
    fn sni_is_never_an_ip_literal() {
        assert!(ips_are_not("a.test"));
        assert!(!ips_are_not("127.0.0.1"));
        assert!(!ips_are_not("[::1]"));
    }
}
