//! Black-box tests of the review's smaller hardening items (issue 13):
//! nothing internal in `order.error`, the management API answers only
//! requests meant for itself and refuses unrepresentable knobs with a 400,
//! a JWS signature is checked before an account's status is told, and a
//! request is bounded (body size, body read time, requests in flight).
//! Every request goes to loopback.

use kiln::knobs::{FinalizeDelay, Knobs};
use kiln_tests::acme::{Account, Acme, KeyKind, Order, generate_key, p256};
use kiln_tests::{TestKiln, csr_der_with_key, free_port};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---- order.error -------------------------------------------------------------

/// Text that only internals carry: OpenSSL's error strings and source
/// paths, Rust source paths, OS errors.
fn assert_nothing_internal(error: &Value) {
    // The details (the type itself reads `…:error:…`).
    let mut text = error["detail"].to_string();
    for sub in error["subproblems"].as_array().into_iter().flatten() {
        text += &sub["detail"].to_string();
    }
    for internal in [
        "error:", ".c:", "crypto/", "ssl/", ".rs:", "openssl", "os error", "Ok(", "Err(",
    ] {
        assert!(
            !text
                .to_ascii_lowercase()
                .contains(&internal.to_ascii_lowercase()),
            "order.error shows internal text {internal:?}: {text}"
        );
    }
}

/// Polls until the order is `invalid`, returning it (60 s at most).
async fn invalid_order(acme: &Acme, account: &Account, url: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let order = acme.read_order(account, url).await;
        match order.status() {
            "invalid" => return order.body,
            "valid" => panic!("order became valid: {}", order.body),
            _ => {}
        }
        assert!(Instant::now() < deadline, "still {}", order.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn order_id(order: &Order) -> String {
    order.url.rsplit('/').next().unwrap().to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A P-256 CSR whose public point is moved off the curve: a key the api
/// would refuse, put in the store behind its back to reach the signer.
fn csr_with_a_point_off_the_curve(names: &[&str]) -> Vec<u8> {
    let key = p256();
    let mut der = csr_der_with_key(names, &key);
    let point = key.public_key_to_der().unwrap();
    let point = &point[point.len() - 65..];
    assert_eq!(point[0], 0x04, "uncompressed point");
    let at = der
        .windows(65)
        .position(|w| w == point)
        .expect("the point in the CSR");
    der[at + 64] ^= 0x01;
    der
}

/// A Kiln whose pipeline waits 3 s before it starts, so a test can change
/// a finalized order's stored state before the signer reads it.
async fn delayed_kiln() -> TestKiln {
    TestKiln::start_with(None, |c| {
        c.knobs = Some(Knobs {
            finalize_delay: FinalizeDelay::Fixed(Duration::from_secs(3)),
            ..Knobs::default()
        })
    })
    .await
}

/// The signer's own failures: a stored name its builder refuses (the CA's
/// inconsistency, never the client's) and a stored key OpenSSL cannot read
/// (whose OpenSSL error text, with source paths, was the detail before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_failure_shows_no_internal_text() {
    let kiln = delayed_kiln().await;
    let acme = Acme::connect(&kiln).await;
    let account = acme.create_account().await;

    let order = acme
        .ready_order(&kiln, &account, &["names.hardening.test"])
        .await;
    let csr = csr_der_with_key(&["names.hardening.test"], &p256());
    acme.finalize(&account, &order, &csr)
        .await
        .expect_status(200);
    let id = order_id(&order);
    kiln.kiln
        .store
        .execute_admin(&format!(
            "UPDATE orders SET identifiers = '[{{\"type\":\"dns\",\"value\":\"not a name!\"}}]' \
             WHERE id = '{id}' AND status = 'processing'"
        ))
        .await
        .unwrap();
    let failed = invalid_order(&acme, &account, &order.url).await;
    let error = &failed["error"];
    assert_eq!(
        error["type"], "urn:ietf:params:acme:error:serverInternal",
        "the CA's inconsistency is not the client's CSR: {error}"
    );
    let detail = error["detail"].as_str().unwrap();
    assert!(
        detail.contains("the CA's operators have the details") && detail.contains(&id),
        "{detail}"
    );
    assert!(!detail.contains("not a name"), "{detail}");
    assert_nothing_internal(error);

    let order = acme
        .ready_order(&kiln, &account, &["key.hardening.test"])
        .await;
    let csr = csr_der_with_key(&["key.hardening.test"], &p256());
    acme.finalize(&account, &order, &csr)
        .await
        .expect_status(200);
    let id = order_id(&order);
    let bad = csr_with_a_point_off_the_curve(&["key.hardening.test"]);
    kiln.kiln
        .store
        .execute_admin(&format!(
            "UPDATE orders SET csr = X'{}' WHERE id = '{id}' AND status = 'processing'",
            hex(&bad)
        ))
        .await
        .unwrap();
    let failed = invalid_order(&acme, &account, &order.url).await;
    let error = &failed["error"];
    assert_eq!(
        error["type"], "urn:ietf:params:acme:error:badCSR",
        "{error}"
    );
    assert_nothing_internal(error);
    kiln.kiln.shutdown().await;
}

/// A key the api accepts at finalize (RSA 2048–8192 bits in multiples of
/// 8) is not refused by the signer after `processing`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signer_certifies_every_rsa_size_the_api_accepts() {
    let kiln = TestKiln::start(None).await;
    let acme = Acme::connect(&kiln).await;
    let account = acme.create_account().await;
    let names = ["rsa4104.hardening.test"];
    let order = acme.ready_order(&kiln, &account, &names).await;
    let key = generate_key(KeyKind::Rsa(4104));
    acme.finalize(&account, &order, &csr_der_with_key(&names, &key))
        .await
        .expect_status(200);
    acme.poll_order(&account, &order.url, "valid").await;
    kiln.kiln.shutdown().await;
}

// ---- the management API ------------------------------------------------------

/// One HTTP/1.1 request written by hand (so the Host is exactly ours):
/// the status and the body.
async fn raw(addr: SocketAddr, head: &str, body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn mgmt_kiln() -> (TestKiln, SocketAddr) {
    let mgmt = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let kiln = TestKiln::start_with(None, |c| c.mgmt_listen = Some(mgmt)).await;
    (kiln, mgmt)
}

async fn finalize_delay(mgmt: SocketAddr) -> String {
    let (status, body) = raw(mgmt, &format!("GET /knobs HTTP/1.1\r\nHost: {mgmt}"), "").await;
    assert_eq!(status, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    doc["finalize_delay"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_management_api_answers_only_requests_for_itself() {
    let (kiln, mgmt) = mgmt_kiln().await;
    let port = mgmt.port();
    for host in [
        mgmt.to_string(),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
    ] {
        let (status, body) = raw(mgmt, &format!("GET /knobs HTTP/1.1\r\nHost: {host}"), "").await;
        assert_eq!(status, 200, "Host {host}: {body}");
    }

    // DNS rebinding: a page's name now resolves to 127.0.0.1.
    for host in [
        format!("rebound.example:{port}"),
        format!("localhost:{}", port.wrapping_add(1)),
        "localhost".to_string(),
    ] {
        let (status, body) = raw(mgmt, &format!("GET /knobs HTTP/1.1\r\nHost: {host}"), "").await;
        assert_eq!(status, 421, "Host {host}: {body}");
        assert!(body.contains("not this management API"), "{body}");
    }

    // A cross-site POST from a browser carries the page's Origin.
    let change = json!({"finalize_delay": "7s"}).to_string();
    for origin in ["http://evil.example", "null", &format!("https://{mgmt}")] {
        let head = format!(
            "POST /knobs HTTP/1.1\r\nHost: {mgmt}\r\nOrigin: {origin}\r\n\
             Content-Type: application/json"
        );
        let (status, body) = raw(mgmt, &head, &change).await;
        assert_eq!(status, 403, "Origin {origin}: {body}");
        assert!(body.contains("Origin"), "{body}");
    }
    assert_eq!(finalize_delay(mgmt).await, "none", "nothing changed");

    // Its own Origin (a page it served itself, or curl without one) works.
    let head = format!(
        "POST /knobs HTTP/1.1\r\nHost: localhost:{port}\r\nOrigin: http://localhost:{port}\r\n\
         Content-Type: application/json"
    );
    let (status, body) = raw(mgmt, &head, &change).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(finalize_delay(mgmt).await, "7000ms");

    // Not JSON: what a cross-site form would send.
    let head = format!(
        "POST /knobs HTTP/1.1\r\nHost: {mgmt}\r\nContent-Type: application/x-www-form-urlencoded"
    );
    let (status, _) = raw(mgmt, &head, "finalize_delay=1s").await;
    assert_eq!(status, 415);
    assert_eq!(finalize_delay(mgmt).await, "7000ms");
    kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrepresentable_knobs_are_a_400_and_the_server_carries_on() {
    let (kiln, mgmt) = mgmt_kiln().await;
    let head = format!("POST /knobs HTTP/1.1\r\nHost: {mgmt}\r\nContent-Type: application/json");
    for (doc, fragment) in [
        (r#"{"finalize_delay": "1e20s"}"#, "exponent"),
        (
            r#"{"finalize_delay": "exp:99999999999999999999s"}"#,
            "out of range",
        ),
        (r#"{"finalize_delay": "uniform:1s..NaN"}"#, "bad duration"),
        (r#"{"http_faults": ["order:slow=1e20s"]}"#, "exponent"),
        (
            r#"{"http_faults": ["order:503:rate=NaN"]}"#,
            "between 0 and 1",
        ),
        (r#"{"retry_after_seconds": 1e20}"#, "bad knobs document"),
        (
            r#"{"retry_after_seconds": 18446744073709551615}"#,
            "out of range",
        ),
        (r#"{"retry_after_seconds": -1}"#, "bad knobs document"),
        (r#"{"seed": 1e20}"#, "bad knobs document"),
        (r#"{"finalize_delay": "#, "bad knobs document"),
    ] {
        let (status, body) = raw(mgmt, &head, doc).await;
        assert_eq!(status, 400, "{doc}: {body}");
        let answer: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{body}"));
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(fragment), "{doc}: {error}");
    }
    assert_eq!(finalize_delay(mgmt).await, "none");

    // Both servers still answer, and the largest value taken works.
    let big = json!({"retry_after_seconds": 31_536_000, "retry_after": "http-date"});
    let (status, body) = raw(mgmt, &head, &big.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let acme = Acme::connect(&kiln).await;
    let account = acme.create_account().await;
    acme.new_order(&account, &["still.hardening.test"]).await;
    kiln.kiln.shutdown().await;
}

// ---- the JWS signature before the account --------------------------------------

/// Signs `header` (naming someone's `kid` or `jwk`) with `key`.
async fn post_as(
    acme: &Acme,
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
    url: &str,
    header: Value,
    payload: &Value,
) -> kiln_tests::acme::Reply {
    acme.post_signed(key, url, header, payload.to_string().as_bytes())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_is_described_only_to_a_valid_signature() {
    let kiln = TestKiln::start(None).await;
    let acme = Acme::connect(&kiln).await;
    let stranger = p256();
    let new_order = acme.resource("newOrder");
    let order = json!({"identifiers": [{"type": "dns", "value": "jws.hardening.test"}]});

    // A valid account, signed by a stranger: the signature is what is wrong.
    let valid = acme.create_account().await;
    let header = acme.kid_header(&valid.url, &new_order).await;
    let detail = post_as(&acme, &stranger, &new_order, header, &order)
        .await
        .expect_problem(400, "malformed");
    assert!(detail.contains("signature"), "{detail}");

    // A deactivated account: the stranger learns nothing more than above;
    // its key's holder is told it is deactivated.
    let gone = acme.create_account().await;
    acme.post_kid(&gone, &gone.url, Some(&json!({"status": "deactivated"})))
        .await
        .expect_status(200);
    let header = acme.kid_header(&gone.url, &new_order).await;
    let stranger_sees = post_as(&acme, &stranger, &new_order, header, &order)
        .await
        .expect_problem(400, "malformed");
    assert_eq!(stranger_sees, detail, "same answer as for a valid account");
    let header = acme.kid_header(&gone.url, &new_order).await;
    let owner_sees = post_as(&acme, &gone.key, &new_order, header, &order)
        .await
        .expect_problem(403, "unauthorized");
    assert!(owner_sees.contains("deactivated"), "{owner_sees}");

    // No account at that URL: nothing to verify with; RFC 8555's type.
    let header = acme
        .kid_header(&acme.url("/acme/acct/nosuchaccount"), &new_order)
        .await;
    post_as(&acme, &stranger, &new_order, header, &order)
        .await
        .expect_problem(400, "accountDoesNotExist");

    // newAccount by jwk: an existing account's key with a forged signature
    // gets no account URL, only the signature's refusal.
    let new_account = acme.resource("newAccount");
    let header = acme.jwk_header(&valid.key, &new_account).await;
    let reply = post_as(
        &acme,
        &stranger,
        &new_account,
        header,
        &json!({"onlyReturnExisting": true}),
    )
    .await;
    let detail = reply.expect_problem(400, "malformed");
    assert!(detail.contains("signature"), "{detail}");
    assert!(reply.header("location").is_none(), "{reply:?}");
    kiln.kiln.shutdown().await;
}

// ---- request bounds ------------------------------------------------------------

/// Sends `head` over TLS to Kiln (blocking, on its own thread) and returns
/// everything the server answered before closing or `wait` passed.
async fn raw_https(addr: SocketAddr, head: String, wait: Duration) -> String {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut connector =
            openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).unwrap();
        connector.set_verify(openssl::ssl::SslVerifyMode::NONE);
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(wait)).unwrap();
        let mut tls = connector.build().connect("127.0.0.1", tcp).unwrap();
        tls.write_all(head.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_64_kib_is_refused_with_413() {
    let kiln = TestKiln::start(None).await;
    let acme = Acme::connect(&kiln).await;
    let reply = acme
        .post_body(&acme.resource("newAccount"), vec![b'x'; 65 * 1024])
        .await;
    let detail = reply.expect_problem(413, "malformed");
    assert!(detail.contains("over 64 KiB"), "{detail}");
    kiln.kiln.shutdown().await;
}

/// A request whose body never arrives is answered 408 after the body
/// timeout; while it holds the only in-flight place, any other request is
/// a 503 with Retry-After at once, and once it is gone the api serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_times_out_and_the_in_flight_cap_sheds_load() {
    let kiln = TestKiln::start_with(None, |c| c.max_in_flight_requests = 1).await;
    let acme = Acme::connect(&kiln).await;
    let url = acme.resource("newAccount");
    let path = url.trim_start_matches(&acme.base_url).to_string();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/jose+json\r\n\
         Content-Length: 100\r\n\r\n",
        acme.base_url.trim_start_matches("https://")
    );
    let addr: SocketAddr = acme
        .base_url
        .trim_start_matches("https://")
        .parse()
        .expect("base URL is an address");
    let started = Instant::now();
    let stalled = tokio::spawn(raw_https(addr, head, Duration::from_secs(30)));
    // Wait until the stalled request holds the place.
    let deadline = Instant::now() + Duration::from_secs(5);
    let busy = loop {
        let reply = acme.http.get(acme.url("/directory")).send().await.unwrap();
        if reply.status() == 503 {
            break reply;
        }
        assert!(
            Instant::now() < deadline,
            "never 503 while a request stalls"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(busy.headers()["retry-after"], "1");
    let body: Value = busy.json().await.unwrap();
    assert_eq!(body["type"], "urn:ietf:params:acme:error:serverInternal");
    let answer = stalled.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 10 s"), "{answer}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(9), "408 after {waited:?}");
    let reply = acme.http.get(acme.url("/directory")).send().await.unwrap();
    assert_eq!(
        reply.status(),
        200,
        "served again once the stalled request ended"
    );
    kiln.kiln.shutdown().await;
}

// ---- files on disk -------------------------------------------------------------

fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The database and the CA's keys are readable by their owner only, also
/// when the database existed with a looser mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_and_the_ca_keys_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("kiln.db");
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let kiln = TestKiln::start_in(data, None).await;
    let acme = Acme::connect(&kiln).await;
    acme.create_account().await; // the database is in use (WAL written)
    let dir = kiln.data_dir.path();
    assert_eq!(mode_of(&dir.join("kiln.db")), 0o600);
    let wal = dir.join("kiln.db-wal");
    if wal.exists() {
        assert_eq!(
            mode_of(&wal),
            0o600,
            "SQLite's WAL takes the database's mode"
        );
    }
    for key in ["ca/root-key.pem", "ca/intermediate-key.pem"] {
        assert_eq!(mode_of(&dir.join(key)), 0o600, "{key}");
    }
    kiln.kiln.shutdown().await;
}

/// `kiln init` (what compose and cluster.sh run) and `kiln ca …` keep the
/// root's key out of the signer's directory: the root lives in a directory
/// of its own, and a second intermediate never replaces a live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ceremony_keeps_the_root_key_out_of_the_signers_directory() {
    kiln_tests::cluster::ensure_binaries_built().await;
    let kiln = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(kiln_tests::cluster::binary("kiln"))
            .args(args)
            .output()
            .expect("kiln runs")
    };
    let data = tempfile::tempdir().unwrap();
    let (dir, root_dir) = (data.path().join("deploy"), data.path().join("offline-root"));
    let init = |dir: &std::path::Path| {
        kiln(&[
            "init".as_ref(),
            "--dir".as_ref(),
            dir.as_os_str(),
            "--root-dir".as_ref(),
            root_dir.as_os_str(),
        ])
    };
    let first = init(&dir);
    assert!(first.status.success(), "{first:?}");
    let signer_dir = dir.join("ca");
    for file in ["intermediate.pem", "intermediate-key.pem", "root.pem"] {
        assert!(signer_dir.join(file).is_file(), "{file} for the signer");
    }
    assert!(
        !signer_dir.join("root-key.pem").exists(),
        "no root key for the signer"
    );
    assert_eq!(mode_of(&root_dir.join("root-key.pem")), 0o600);
    assert_eq!(mode_of(&signer_dir.join("intermediate-key.pem")), 0o600);
    let read = |path: std::path::PathBuf| {
        openssl::x509::X509::from_pem(&std::fs::read(path).unwrap()).unwrap()
    };
    let root = read(root_dir.join("root.pem"));
    let intermediate = read(signer_dir.join("intermediate.pem"));
    assert!(intermediate.verify(&root.public_key().unwrap()).unwrap());
    // Again: the same CA, not a new one.
    assert!(init(&dir).status.success());
    assert_eq!(read(signer_dir.join("intermediate.pem")), intermediate);

    // A second intermediate from the same root: never over the live one.
    let issue = |signer_dir: &std::path::Path| {
        kiln(&[
            "ca".as_ref(),
            "issue-intermediate".as_ref(),
            "--root-dir".as_ref(),
            root_dir.as_os_str(),
            "--signer-dir".as_ref(),
            signer_dir.as_os_str(),
        ])
    };
    let over = issue(&signer_dir);
    assert!(!over.status.success(), "{over:?}");
    assert_eq!(read(signer_dir.join("intermediate.pem")), intermediate);
    let next_dir = data.path().join("next-signer");
    assert!(issue(&next_dir).status.success());
    let next = read(next_dir.join("intermediate.pem"));
    assert_ne!(next, intermediate);
    assert!(next.verify(&root.public_key().unwrap()).unwrap());
    assert!(!next_dir.join("root-key.pem").exists());
    // `kiln ca init` makes a root, never over one.
    let again = kiln(&[
        "ca".as_ref(),
        "init".as_ref(),
        "--root-dir".as_ref(),
        root_dir.as_os_str(),
        "--signer-dir".as_ref(),
        data.path().join("third").as_os_str(),
    ]);
    assert!(!again.status.success(), "{again:?}");
    assert_eq!(read(root_dir.join("root.pem")), root);
}

// ---- what relying parties fetch --------------------------------------------------

/// The URL of `leaf`'s AIA caIssuers access description.
fn aia_issuer_url(leaf: &openssl::x509::X509) -> String {
    let der = leaf.to_der().unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityInfoAccess(aia) => aia
                .accessdescs
                .iter()
                .find_map(|d| match &d.access_location {
                    x509_parser::extensions::GeneralName::URI(uri) => Some(uri.to_string()),
                    _ => None,
                }),
            _ => None,
        })
        .expect("an AIA caIssuers URI")
}

/// Every leaf's AIA names the issuer certificate on the plain-HTTP listener
/// (BR 7.1.2.7.7: `http://` only), and what it serves there is the
/// certificate that signed the leaf.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leafs_issuer_url_serves_its_issuer_over_plain_http() {
    let kiln = TestKiln::start_with(None, |c| {
        c.public_http_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let acme = Acme::connect(&kiln).await;
    let account = acme.create_account().await;
    let issued = acme.issue(&kiln, &account, &["aia.hardening.test"]).await;
    let leaf = openssl::x509::X509::from_der(&issued.cert_der).unwrap();
    let url = aia_issuer_url(&leaf);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(url.starts_with(&kiln.kiln.public_base_url), "{url}");
    assert_ne!(
        url.split('/').nth(2),
        kiln.kiln.base_url.split('/').nth(2),
        "not the ACME HTTPS listener"
    );
    let reply = reqwest::get(&url).await.expect("GET over plain HTTP");
    assert_eq!(reply.status(), 200);
    assert_eq!(
        reply.headers()["content-type"],
        "application/pkix-cert",
        "RFC 2585"
    );
    let issuer = openssl::x509::X509::from_der(&reply.bytes().await.unwrap()).unwrap();
    assert!(leaf.verify(&issuer.public_key().unwrap()).unwrap());
    // The CRL URL is under the same plain-HTTP base.
    let der = leaf.to_der().unwrap();
    let base = kiln.kiln.public_base_url.as_bytes();
    assert_eq!(
        der.windows(base.len()).filter(|w| *w == base).count(),
        2,
        "the AIA and CRL URLs, both under {}",
        kiln.kiln.public_base_url
    );
    kiln.kiln.shutdown().await;
}
