//! Challenge checks against real servers on loopback (random ports only).

use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::response::Redirect;
use axum::routing::get;
use dns::testing::TestDnsServer;
use dns::{Dns, DnsMode};
use domain::{Identifier, Problem, ProblemKind};
use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{AlpnError, NameType, Ssl, SslAcceptor, SslMethod, select_next_proto};
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509, X509Builder, X509Extension, X509NameBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_openssl::SslStream;
use validator::address::AddressPolicy;
use validator::challenge::{
    ChallengePorts, dns01_txt_value, validate_dns01, validate_http01, validate_tlsalpn01,
};

const KA: &str =
    "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI";
const DOMAIN: &str = "a.kiln.test";

fn loopback() -> Dns {
    Dns::new(DnsMode::Loopback).unwrap()
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The all-in-one's policy: the challenge servers here are on loopback.
fn laptop() -> AddressPolicy {
    AddressPolicy::public_and_loopback()
}

fn ports(http01: u16, tlsalpn01: u16) -> ChallengePorts {
    ChallengePorts { http01, tlsalpn01 }
}

#[track_caller]
fn assert_problem(result: Result<(), Problem>, kind: ProblemKind, needle: &str) -> Problem {
    assert_problem_for(result, Identifier::dns(DOMAIN), kind, needle)
}

fn assert_problem_for(
    result: Result<(), Problem>,
    identifier: Identifier,
    kind: ProblemKind,
    needle: &str,
) -> Problem {
    let p = result.expect_err("expected a problem");
    assert_eq!(p.kind, kind, "{p}");
    assert_eq!(p.identifier, Some(identifier), "{p}");
    assert!(p.detail.contains(needle), "{needle:?} not in: {p}");
    p
}

// ---------------------------------------------------------------- http-01

async fn http_server() -> u16 {
    const P: &str = "/.well-known/acme-challenge";
    let app = Router::new()
        .route(&format!("{P}/good"), get(|| async { format!("{KA}\r\n") }))
        .route(&format!("{P}/wrong"), get(|| async { "not it\n" }))
        .route(&format!("{P}/big"), get(|| async { "x".repeat(100_000) }))
        .route(
            &format!("{P}/redirect"),
            get(|| async { Redirect::temporary("/.well-known/acme-challenge/good") }),
        )
        .route(
            &format!("{P}/loop"),
            get(|| async { Redirect::temporary("/.well-known/acme-challenge/loop") }),
        )
        .route(
            &format!("{P}/ftp"),
            get(|| async { Redirect::temporary("ftp://a.kiln.test/x") }),
        )
        .route(
            &format!("{P}/otherport"),
            get(|| async { Redirect::temporary("http://a.kiln.test:1/x") }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

#[tokio::test]
async fn http01_outcomes() {
    let port = http_server().await;
    let dns = loopback();
    let p = ports(port, closed_port());
    let check = |token: &'static str| {
        let dns = dns.clone();
        async move { validate_http01(&dns, &p, &laptop(), DOMAIN, token, KA).await }
    };

    check("good").await.unwrap();
    check("redirect").await.unwrap();

    assert_problem(
        check("wrong").await,
        ProblemKind::IncorrectResponse,
        "\"not it\"",
    );
    let big = assert_problem(
        check("big").await,
        ProblemKind::IncorrectResponse,
        "longer than",
    );
    assert!(big.detail.len() < 400, "{big}");
    assert_problem(check("missing").await, ProblemKind::Unauthorized, "404");
    assert_problem(check("loop").await, ProblemKind::Connection, "redirects");
    assert_problem(check("ftp").await, ProblemKind::Connection, "scheme");
    assert_problem(check("otherport").await, ProblemKind::Connection, "port");

    let refused = validate_http01(
        &dns,
        &ports(closed_port(), 1),
        &laptop(),
        DOMAIN,
        "good",
        KA,
    )
    .await;
    assert_problem(refused, ProblemKind::Connection, "connect");
}

#[tokio::test]
async fn http01_resolves_with_kiln_dns() {
    let port = http_server().await;
    let server = TestDnsServer::start().await;
    let dns = server.dns();
    let p = ports(port, 1);

    // No A/AAAA: a dns problem, not a system-resolver lookup.
    let r = validate_http01(&dns, &p, &laptop(), DOMAIN, "good", KA).await;
    assert_problem(r, ProblemKind::Dns, DOMAIN);

    server.set_a(DOMAIN, IpAddr::from([127, 0, 0, 1])).await;
    validate_http01(&dns, &p, &laptop(), DOMAIN, "good", KA)
        .await
        .unwrap();
    assert!(
        server
            .queries()
            .iter()
            .any(|q| q.name == DOMAIN && q.qtype == "A"),
        "{:?}",
        server.queries()
    );
}

#[tokio::test]
async fn http01_rejects_a_token_that_would_bend_the_url() {
    let r = validate_http01(&loopback(), &ports(1, 1), &laptop(), DOMAIN, "../x", KA).await;
    assert_eq!(r.unwrap_err().kind, ProblemKind::ServerInternal);
}

// ------------------------------------------------- the address policy (SSRF)

/// A listener that counts the connections it accepts and answers each with
/// the key authorization, or with `redirect` when one is set.
async fn counting_responder(
    ip: IpAddr,
    port: u16,
    redirect: Option<String>,
) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((ip, port)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut request = [0u8; 1024];
            let _ = tcp.read(&mut request).await;
            let answer = match &redirect {
                Some(to) => format!(
                    "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ),
                None => format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{KA}",
                    KA.len()
                ),
            };
            let _ = tcp.write_all(answer.as_bytes()).await;
        }
    });
    (port, accepted)
}

/// Production refuses a name that resolves to loopback, over IPv4 and IPv6,
/// for http-01 and tls-alpn-01, and never connects: the responder there
/// counts no connection. The all-in-one's policy reaches the same responder.
#[tokio::test]
async fn production_never_connects_to_loopback_answers() {
    for ip in [
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(Ipv6Addr::LOCALHOST),
    ] {
        let (port, accepted) = counting_responder(ip, 0, None).await;
        let server = TestDnsServer::start().await;
        server.set_a(DOMAIN, ip).await;
        let dns = server.dns();
        let production = AddressPolicy::public_only();
        let r = validate_http01(&dns, &ports(port, 1), &production, DOMAIN, "t", KA).await;
        let p = assert_problem(r, ProblemKind::Connection, "not a public address");
        assert!(!p.detail.contains("os error"), "{p}");
        let r = validate_tlsalpn01(&dns, &ports(1, port), &production, DOMAIN, KA).await;
        assert_problem(r, ProblemKind::Connection, "not a public address");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            0,
            "{ip}: a connection was made"
        );

        validate_http01(&dns, &ports(port, 1), &laptop(), DOMAIN, "t", KA)
            .await
            .unwrap();
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "{ip}: the laptop policy connects"
        );
    }
}

/// A redirect to a forbidden IP literal is refused before any connection to
/// it. The first hop is on 127.0.0.2, allowed by this test's policy alone;
/// its redirect names 127.0.0.1 on the same port, which the policy forbids.
#[tokio::test]
async fn a_redirect_to_a_forbidden_ip_literal_is_not_followed() {
    let (port, forbidden) = counting_responder(IpAddr::from([127, 0, 0, 1]), 0, None).await;
    let to = format!("http://127.0.0.1:{port}/.well-known/acme-challenge/t");
    let (_, first_hop) = counting_responder(IpAddr::from([127, 0, 0, 2]), port, Some(to)).await;
    let server = TestDnsServer::start().await;
    server.set_a(DOMAIN, IpAddr::from([127, 0, 0, 2])).await;
    let only_the_first_hop = AddressPolicy {
        also_allowed: vec!["127.0.0.2/32".parse().unwrap()],
    };
    let r = validate_http01(
        &server.dns(),
        &ports(port, 1),
        &only_the_first_hop,
        DOMAIN,
        "t",
        KA,
    )
    .await;
    assert_problem(r, ProblemKind::Connection, "127.0.0.1:");
    assert_eq!(
        first_hop.load(Ordering::SeqCst),
        1,
        "the first hop was asked"
    );
    assert_eq!(
        forbidden.load(Ordering::SeqCst),
        0,
        "the redirect target got a connection"
    );
}

// ----------------------------------------------------------------- dns-01

#[tokio::test]
async fn dns01_outcomes() {
    let server = TestDnsServer::start().await;
    let dns = server.dns();
    let name = format!("_acme-challenge.{DOMAIN}");

    assert_problem(
        validate_dns01(&dns, DOMAIN, KA).await,
        ProblemKind::Dns,
        &name,
    );

    server.set_txt(&name, "stale-value").await;
    server.set_txt(&name, "another").await;
    assert_problem(
        validate_dns01(&dns, DOMAIN, KA).await,
        ProblemKind::Unauthorized,
        "2 record(s)",
    );

    server.set_txt(&name, &dns01_txt_value(KA)).await;
    validate_dns01(&dns, DOMAIN, KA).await.unwrap();

    server.set_servfail(&name);
    assert_problem(
        validate_dns01(&dns, DOMAIN, KA).await,
        ProblemKind::Dns,
        "retry",
    );

    // With no DNS at all there are no TXT records.
    assert_problem(
        validate_dns01(&loopback(), DOMAIN, KA).await,
        ProblemKind::Dns,
        &name,
    );
}

// ------------------------------------------------------------ tls-alpn-01

struct CertSpec<'a> {
    sans: &'a [&'a str],
    /// What the acmeIdentifier digests; `None` leaves the extension out.
    digest_of: Option<&'a str>,
    critical: bool,
}

const GOOD: CertSpec = CertSpec {
    sans: &[DOMAIN],
    digest_of: Some(KA),
    critical: true,
};

fn acme_cert(spec: &CertSpec) -> (X509, PKey<Private>) {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "acme-tls-alpn-01").unwrap();
    let name = name.build();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    b.set_pubkey(&key).unwrap();
    let mut san = SubjectAlternativeName::new();
    // An address is an iPAddress SAN; `dns:` forces a dNSName.
    for s in spec.sans {
        match s.strip_prefix("dns:") {
            Some(name) => san.dns(name),
            None if s.parse::<std::net::IpAddr>().is_ok() => san.ip(s),
            None => san.dns(s),
        };
    }
    let san = san.build(&b.x509v3_context(None, None)).unwrap();
    b.append_extension(san).unwrap();
    if let Some(input) = spec.digest_of {
        let mut value = vec![0x04, 0x20];
        value.extend_from_slice(&openssl::sha::sha256(input.as_bytes()));
        let ext = X509Extension::new_from_der(
            &Asn1Object::from_str("1.3.6.1.5.5.7.1.31").unwrap(),
            spec.critical,
            &Asn1OctetString::new_from_bytes(&value).unwrap(),
        )
        .unwrap();
        b.append_extension(ext).unwrap();
    }
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (b.build(), key)
}

/// A TLS server presenting `spec`'s certificate; with `alpn` it selects
/// `acme-tls/1`. Returns its port and the SNI names it was sent.
async fn tls_server(spec: &CertSpec<'_>, alpn: bool) -> (u16, Arc<Mutex<Vec<String>>>) {
    let (cert, key) = acme_cert(spec);
    let mut acc = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    acc.set_private_key(&key).unwrap();
    acc.set_certificate(&cert).unwrap();
    if alpn {
        acc.set_alpn_select_callback(|_, client| {
            select_next_proto(b"\x0aacme-tls/1", client).ok_or(AlpnError::NOACK)
        });
    }
    // OpenSSL only keeps the client's SNI for a server with a servername callback.
    let snis = Arc::new(Mutex::new(Vec::new()));
    let seen = snis.clone();
    acc.set_servername_callback(move |ssl, _| {
        if let Some(sni) = ssl.servername(NameType::HOST_NAME) {
            seen.lock().unwrap().push(sni.to_owned());
        }
        Ok(())
    });
    let acceptor = Arc::new(acc.build());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let ssl = Ssl::new(acceptor.context()).unwrap();
                let mut stream = SslStream::new(ssl, tcp).unwrap();
                if Pin::new(&mut stream).accept().await.is_ok() {
                    // Hold the connection until the validator closes it.
                    let _ = stream.read(&mut [0u8; 1]).await;
                }
            });
        }
    });
    (port, snis)
}

#[tokio::test]
async fn tlsalpn01_accepts_the_right_certificate() {
    let (port, snis) = tls_server(&GOOD, true).await;
    validate_tlsalpn01(&loopback(), &ports(1, port), &laptop(), DOMAIN, KA)
        .await
        .unwrap();
    assert_eq!(*snis.lock().unwrap(), [DOMAIN]);
}

#[tokio::test]
async fn tlsalpn01_rejects_bad_certificates() {
    let dns = loopback();
    let cases = [
        (
            CertSpec {
                digest_of: Some("some other key authorization"),
                ..GOOD
            },
            ProblemKind::IncorrectResponse,
            "acmeIdentifier",
        ),
        (
            CertSpec {
                critical: false,
                ..GOOD
            },
            ProblemKind::Unauthorized,
            "not critical",
        ),
        (
            CertSpec {
                digest_of: None,
                ..GOOD
            },
            ProblemKind::Unauthorized,
            "no acmeIdentifier",
        ),
        (
            CertSpec {
                sans: &[DOMAIN, "b.kiln.test"],
                ..GOOD
            },
            ProblemKind::Unauthorized,
            "2 name(s)",
        ),
        (
            CertSpec {
                sans: &["other.kiln.test"],
                ..GOOD
            },
            ProblemKind::Unauthorized,
            "other.kiln.test",
        ),
    ];
    for (spec, kind, needle) in cases {
        let (port, _) = tls_server(&spec, true).await;
        let r = validate_tlsalpn01(&dns, &ports(1, port), &laptop(), DOMAIN, KA).await;
        assert_problem(r, kind, needle);
    }
}

#[tokio::test]
async fn tlsalpn01_transport_failures() {
    let dns = loopback();

    // A TLS server that does not do ALPN at all.
    let (port, _) = tls_server(&GOOD, false).await;
    let r = validate_tlsalpn01(&dns, &ports(1, port), &laptop(), DOMAIN, KA).await;
    assert_problem(r, ProblemKind::Unauthorized, "acme-tls/1");

    // Nothing listening.
    let r = validate_tlsalpn01(&dns, &ports(1, closed_port()), &laptop(), DOMAIN, KA).await;
    assert_problem(r, ProblemKind::Connection, "connect");

    // Plain HTTP where TLS is expected.
    let http = http_server().await;
    let r = validate_tlsalpn01(&dns, &ports(1, http), &laptop(), DOMAIN, KA).await;
    assert_problem(r, ProblemKind::Tls, "handshake");
}

// ------------------------------------------------------- IP identifiers

fn localhost_ip() -> Identifier {
    Identifier::ip("127.0.0.1".parse().unwrap())
}

/// RFC 8738 §6: an IP identifier is validated at the address itself, with
/// its reverse-DNS name as SNI and exactly one iPAddress SAN.
#[tokio::test]
async fn tlsalpn01_validates_an_ip_address_with_its_reverse_name_as_sni() {
    let ip_cert = CertSpec {
        sans: &["127.0.0.1"],
        ..GOOD
    };
    let (port, snis) = tls_server(&ip_cert, true).await;
    validate_tlsalpn01(&loopback(), &ports(1, port), &laptop(), "127.0.0.1", KA)
        .await
        .unwrap();
    assert_eq!(*snis.lock().unwrap(), ["1.0.0.127.in-addr.arpa"]);

    // The address spelled as a dNSName is not an iPAddress.
    let spelled = CertSpec {
        sans: &["dns:127.0.0.1"],
        ..GOOD
    };
    let (port, _) = tls_server(&spelled, true).await;
    assert_problem_for(
        validate_tlsalpn01(&loopback(), &ports(1, port), &laptop(), "127.0.0.1", KA).await,
        localhost_ip(),
        ProblemKind::Unauthorized,
        "exactly the iPAddress 127.0.0.1",
    );
    // Another address is not this one.
    let other = CertSpec {
        sans: &["127.0.0.2"],
        ..GOOD
    };
    let (port, _) = tls_server(&other, true).await;
    assert_problem_for(
        validate_tlsalpn01(&loopback(), &ports(1, port), &laptop(), "127.0.0.1", KA).await,
        localhost_ip(),
        ProblemKind::Unauthorized,
        "iPAddress",
    );
    // Production connects to no loopback address, IP identifier or not.
    let (port, _) = tls_server(&ip_cert, true).await;
    assert_problem_for(
        validate_tlsalpn01(
            &loopback(),
            &ports(1, port),
            &AddressPolicy::public_only(),
            "127.0.0.1",
            KA,
        )
        .await,
        localhost_ip(),
        ProblemKind::Connection,
        "connect",
    );
}

/// RFC 8738 §5: http-01 for an address goes to the address, IPv6 in
/// brackets, without asking DNS.
#[tokio::test]
async fn http01_validates_an_ip_address_without_dns() {
    let port = http_server().await;
    // `loopback()` would answer any name; an address is never looked up.
    validate_http01(
        &loopback(),
        &ports(port, 1),
        &laptop(),
        "127.0.0.1",
        "good",
        KA,
    )
    .await
    .unwrap();
    let v6 = TcpListener::bind("[::1]:0").await.unwrap();
    let v6_port = v6.local_addr().unwrap().port();
    let app = Router::new().route(
        "/.well-known/acme-challenge/good",
        get(|headers: axum::http::HeaderMap| async move {
            // The Host header names the address (RFC 8738 §5).
            let host = headers["host"].to_str().unwrap().to_string();
            assert!(host.starts_with("[::1]:"), "{host}");
            KA
        }),
    );
    tokio::spawn(async move { axum::serve(v6, app).await });
    validate_http01(
        &loopback(),
        &ports(v6_port, 1),
        &laptop(),
        "::1",
        "good",
        KA,
    )
    .await
    .unwrap();
}
