//! Shared helpers for Kiln's end-to-end tests: a Kiln started in-process on
//! free loopback ports, an http-01 responder, and certificate checks.
//! Beside them: `acme` (a raw ACME client for malformed input), `instant`
//! (instant-acme set up against a Kiln), `cluster` (Kiln distributed, one
//! process per binary), `metrics` (reading `/metrics`) and `clients`
//! (running certbot, lego and the like), `client_commands` (their command
//! lines), `pkilint` (the CA/B Forum linter) and
//! `relying_party` (finding a leaf on its CRL).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use kiln::{EmbeddedConfig, Kiln};
use openssl::x509::X509;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

/// A Kiln on a temporary data directory, with its own http-01 responder.
pub struct TestKiln {
    pub kiln: Kiln,
    pub http01: Http01Responder,
    pub data_dir: tempfile::TempDir,
}

impl TestKiln {
    /// Starts Kiln on 127.0.0.1:0; `dns_server`: where every lookup goes
    /// (None: all names are 127.0.0.1 without CAA).
    pub async fn start(dns_server: Option<SocketAddr>) -> TestKiln {
        let data_dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(data_dir, dns_server).await
    }

    pub async fn start_in(data_dir: tempfile::TempDir, dns_server: Option<SocketAddr>) -> TestKiln {
        let (kiln, http01) = Self::launch(data_dir.path(), 0, dns_server, |_| {}).await;
        TestKiln {
            kiln,
            http01,
            data_dir,
        }
    }

    /// Starts on a given data directory and port (for restart tests); the
    /// directory is not removed afterwards by this value.
    pub async fn start_at(
        dir: &std::path::Path,
        port: u16,
        dns_server: Option<SocketAddr>,
    ) -> TestKiln {
        let (kiln, http01) = Self::launch(dir, port, dns_server, |_| {}).await;
        let placeholder = tempfile::tempdir().expect("temp dir");
        TestKiln {
            kiln,
            http01,
            data_dir: placeholder,
        }
    }

    /// Like [`TestKiln::start`], with `tweak` adjusting the embedded config
    /// (CAA recheck window, finalize timeout, CT policy, ...) before start.
    pub async fn start_with(
        dns_server: Option<SocketAddr>,
        tweak: impl FnOnce(&mut EmbeddedConfig),
    ) -> TestKiln {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let (kiln, http01) = Self::launch(data_dir.path(), 0, dns_server, tweak).await;
        TestKiln {
            kiln,
            http01,
            data_dir,
        }
    }

    async fn launch(
        dir: &std::path::Path,
        port: u16,
        dns_server: Option<SocketAddr>,
        tweak: impl FnOnce(&mut EmbeddedConfig),
    ) -> (Kiln, Http01Responder) {
        let http01 = Http01Responder::start().await;
        let mut config = EmbeddedConfig::new(dir);
        config.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        config.dns_server = dns_server;
        config.http01_port = http01.port;
        config.tlsalpn01_port = free_port();
        tweak(&mut config);
        let kiln = Kiln::start(config).await.expect("kiln starts");
        (kiln, http01)
    }

    pub fn directory_url(&self) -> String {
        self.kiln.directory_url.clone()
    }

    /// An HTTP client that trusts Kiln's root, as an ACME client would.
    pub fn https_client(&self) -> reqwest::Client {
        let root = reqwest::Certificate::from_pem(self.kiln.root_pem.as_bytes()).expect("root pem");
        reqwest::Client::builder()
            .add_root_certificate(root)
            .build()
            .expect("client")
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Serves `/.well-known/acme-challenge/{token}` from a map the test fills.
#[derive(Clone)]
pub struct Http01Responder {
    pub port: u16,
    tokens: Arc<Mutex<HashMap<String, String>>>,
}

impl Http01Responder {
    pub async fn start() -> Http01Responder {
        let tokens: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let app = axum::Router::new()
            .route(
                "/.well-known/acme-challenge/{token}",
                axum::routing::get(answer),
            )
            .with_state(tokens.clone());
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind http-01");
        let port = listener.local_addr().expect("addr").port();
        // The same answers on [::1] and the same port, for `ip` identifiers
        // of ::1 (the validator connects to the address itself); a port
        // taken there already leaves IPv4 only, which every other test needs.
        if let Ok(v6) = tokio::net::TcpListener::bind(("::1", port)).await {
            let app = app.clone();
            tokio::spawn(async move { axum::serve(v6, app).await });
        }
        tokio::spawn(async move { axum::serve(listener, app).await });
        Http01Responder { port, tokens }
    }

    pub fn set(&self, token: &str, key_authorization: &str) {
        self.tokens
            .lock()
            .expect("lock")
            .insert(token.to_string(), key_authorization.to_string());
    }
}

async fn answer(
    State(tokens): State<Arc<Mutex<HashMap<String, String>>>>,
    Path(token): Path<String>,
) -> Result<String, StatusCode> {
    tokens
        .lock()
        .expect("lock")
        .get(&token)
        .cloned()
        .ok_or(StatusCode::NOT_FOUND)
}

/// A CSR for `names` with a fresh P-256 key, DER.
pub fn csr_der(names: &[&str]) -> Vec<u8> {
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    let key = PKey::from_ec_key(
        EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("curve"))
            .expect("key"),
    )
    .expect("pkey");
    csr_der_with_key(names, &key)
}

pub fn csr_der_with_key(
    names: &[&str],
    key: &openssl::pkey::PKeyRef<openssl::pkey::Private>,
) -> Vec<u8> {
    use openssl::hash::MessageDigest;
    use openssl::stack::Stack;
    use openssl::x509::X509ReqBuilder;
    use openssl::x509::extension::SubjectAlternativeName;
    let mut builder = X509ReqBuilder::new().expect("builder");
    builder.set_pubkey(key).expect("pubkey");
    // An address is an iPAddress SAN (RFC 8738), any other name a dNSName.
    let mut san = SubjectAlternativeName::new();
    for name in names {
        match name.parse::<std::net::IpAddr>() {
            Ok(_) => san.ip(name),
            Err(_) => san.dns(name),
        };
    }
    let context = builder.x509v3_context(None);
    let mut extensions = Stack::new().expect("stack");
    extensions
        .push(san.build(&context).expect("san"))
        .expect("push");
    builder.add_extensions(&extensions).expect("extensions");
    builder.sign(key, MessageDigest::sha256()).expect("sign");
    builder.build().to_der().expect("der")
}

/// Splits a PEM chain into certificates.
pub fn parse_chain(pem: &str) -> Vec<X509> {
    X509::stack_from_pem(pem.as_bytes()).expect("PEM chain")
}

/// Verifies `chain` (leaf first) up to `root_pem`.
pub fn verify_chain(chain: &[X509], root_pem: &str) -> Result<(), String> {
    use openssl::stack::Stack;
    use openssl::x509::X509StoreContext;
    use openssl::x509::store::X509StoreBuilder;
    let root = X509::from_pem(root_pem.as_bytes()).map_err(|e| e.to_string())?;
    let mut store = X509StoreBuilder::new().map_err(|e| e.to_string())?;
    store.add_cert(root).map_err(|e| e.to_string())?;
    let store = store.build();
    let mut intermediates = Stack::new().map_err(|e| e.to_string())?;
    for c in &chain[1..] {
        intermediates.push(c.clone()).map_err(|e| e.to_string())?;
    }
    let mut ctx = X509StoreContext::new().map_err(|e| e.to_string())?;
    ctx.init(&store, &chain[0], &intermediates, |c| {
        let ok = c.verify_cert()?;
        Ok(if ok {
            Ok(())
        } else {
            Err(c.error().to_string())
        })
    })
    .map_err(|e| e.to_string())?
}

/// The lowercase hex serial Kiln stores and serves certificates by.
pub fn serial_hex(cert: &openssl::x509::X509Ref) -> String {
    let bytes = cert.serial_number().to_bn().expect("serial").to_vec();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The dNSName SANs of a certificate, sorted.
pub fn san_names(cert: &X509) -> Vec<String> {
    let mut names: Vec<String> = cert
        .subject_alt_names()
        .map(|sans| {
            sans.iter()
                .filter_map(|n| n.dnsname().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// True if the certificate carries the CT poison extension.
pub fn has_poison(cert_der: &[u8]) -> bool {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(cert_der).expect("parse");
    cert.extensions()
        .iter()
        .any(|e| e.oid.to_id_string() == ct::POISON_OID)
}
pub mod acme;
pub mod audit;
pub mod client_commands;
pub mod clients;
pub mod cluster;
pub mod dist;
pub mod instant;
pub mod metrics;
pub mod perspectives;
pub mod pkilint;
pub mod relying_party;
