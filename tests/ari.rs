//! ACME Renewal Information (RFC 9773) through HTTP, with instant-acme as
//! the client: the directory's `renewalInfo`, a certificate's suggested
//! window (inside its validity, with `Retry-After`), `replaces` in newOrder
//! (reflected, one replacement per certificate, only the owner's), a window
//! in the past after a revocation or `kiln ari renew-now`, and malformed
//! certIDs answered as problems.

use instant_acme::{
    Account, CertificateIdentifier, Error, Identifier, NewOrder, Order, OrderStatus, RetryPolicy,
    SuggestedWindow,
};
use kiln_tests::acme::{Acme, ERROR_PREFIX, b64, p256};
use kiln_tests::instant::{self, answer_http01};
use kiln_tests::{TestKiln, csr_der_with_key};
use openssl::pkey::{PKey, Private};
use std::borrow::Cow;
use std::time::Duration;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

/// An issued leaf: its DER, its key, and how ARI names it.
struct Leaf {
    der: Vec<u8>,
    key: PKey<Private>,
    id: CertificateIdentifier<'static>,
    /// Lowercase hex, as in the certificate URL.
    serial: String,
}

/// The certID of RFC 9773 §4.1, worked out here from the certificate
/// rather than by the server: base64url of the AKI keyIdentifier and of the
/// serial's DER bytes.
fn cert_id(der: &[u8]) -> CertificateIdentifier<'static> {
    let (_, cert) = X509Certificate::from_der(der).expect("leaf parses");
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref(),
            _ => None,
        })
        .expect("the leaf has an AKI keyIdentifier");
    CertificateIdentifier {
        authority_key_identifier: Cow::Owned(b64(aki.0)),
        serial: Cow::Owned(b64(cert.raw_serial())),
    }
}

/// notBefore and notAfter, unix seconds.
fn validity(der: &[u8]) -> (i64, i64) {
    let (_, cert) = X509Certificate::from_der(der).expect("leaf parses");
    let v = cert.validity();
    (v.not_before.timestamp(), v.not_after.timestamp())
}

fn retry() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(50))
        .timeout(Duration::from_secs(60))
}

/// Takes an order through http-01 and finalize to its certificate.
async fn complete(kiln: &TestKiln, order: &mut Order, name: &str) -> Leaf {
    answer_http01(order, &kiln.http01).await;
    assert_eq!(
        order.poll_ready(&retry()).await.unwrap(),
        OrderStatus::Ready
    );
    let key = p256();
    order
        .finalize_csr(&csr_der_with_key(&[name], &key))
        .await
        .expect("finalize accepted");
    let pem = order.poll_certificate(&retry()).await.expect("issued");
    let der = kiln_tests::parse_chain(&pem)[0].to_der().unwrap();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let serial = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Leaf {
        id: cert_id(&der),
        der,
        key,
        serial,
    }
}

async fn issue(kiln: &TestKiln, account: &Account, name: &str) -> Leaf {
    let mut order = instant::new_order(account, &[name]).await;
    complete(kiln, &mut order, name).await
}

fn dns(name: &str) -> [Identifier; 1] {
    [Identifier::Dns(name.to_string())]
}

/// Asserts that newOrder failed with an ACME problem of `kind` and `status`.
fn expect_problem(result: Result<Order, Error>, status: u16, kind: &str) {
    match result {
        Err(Error::Api(problem)) => {
            let want = format!("{ERROR_PREFIX}{kind}");
            assert_eq!(
                problem.r#type.as_deref(),
                Some(want.as_str()),
                "{problem:?}"
            );
            assert_eq!(problem.status, Some(status), "{problem:?}");
            assert!(problem.detail.is_some_and(|d| !d.is_empty()));
        }
        Err(other) => panic!("expected a {kind} problem, got {other}"),
        Ok(_) => panic!("expected a {kind} problem, the order was created"),
    }
}

async fn window(account: &Account, id: &CertificateIdentifier<'_>) -> SuggestedWindow {
    let (info, _) = account.renewal_info(id).await.expect("renewal info");
    info.suggested_window
}

/// Start and end are over: the client is told to renew at once.
fn assert_in_the_past(w: &SuggestedWindow) {
    let now = OffsetDateTime::now_utc();
    assert!(w.start < w.end && w.end < now, "{w:?} not in the past");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_lies_two_thirds_into_the_validity_with_retry_after() {
    let kiln = TestKiln::start(None).await;
    let acme = Acme::connect(&kiln).await;
    assert_eq!(
        acme.resource("renewalInfo"),
        format!("{}/acme/renewal-info", acme.base_url)
    );
    let account = instant::account(&kiln).await;
    let leaf = issue(&kiln, &account, "window.test").await;
    let (info, retry_after) = account.renewal_info(&leaf.id).await.unwrap();
    assert_eq!(info.explanation_url, None);
    let (start, end) = (
        info.suggested_window.start.unix_timestamp(),
        info.suggested_window.end.unix_timestamp(),
    );
    let (not_before, not_after) = validity(&leaf.der);
    let lifetime = not_after + 1 - not_before;
    // Let's Encrypt's rule: two thirds through (half for under ten days),
    // 1% of the lifetime either side.
    let before_expiry = match lifetime < 10 * 24 * 3600 {
        true => lifetime / 2,
        false => lifetime / 3,
    };
    let centre = not_after - before_expiry;
    assert!(not_before < start && start < end && end < not_after);
    assert!(
        (start + (end - start) / 2 - centre).abs() <= 1,
        "{start}..{end}"
    );
    assert!((end - start - lifetime / 50).abs() <= 2, "{start}..{end}");
    let six_hours = Duration::from_secs(6 * 3600);
    assert!(retry_after <= six_hours && retry_after > six_hours - Duration::from_secs(60));
    // The raw answer: JSON, Retry-After in seconds, no account needed.
    let raw = acme
        .get(&format!("{}/{}", acme.resource("renewalInfo"), leaf.id))
        .await;
    raw.expect_status(200);
    assert_eq!(raw.header("retry-after"), Some("21600"));
    assert_eq!(raw.header("content-type"), Some("application/json"));
    assert!(
        raw.body["suggestedWindow"]["start"].is_string(),
        "{}",
        raw.text
    );
    kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_replaced_once_and_a_failed_replacement_may_be_retried() {
    let kiln = TestKiln::start(None).await;
    let account = instant::account(&kiln).await;
    let leaf = issue(&kiln, &account, "renew.test").await;
    let ids = dns("renew.test");
    let replacing = || NewOrder::new(&ids).replaces(leaf.id.clone());
    // instant-acme itself checks that the answer reflects `replaces`.
    let mut first = account.new_order(&replacing()).await.expect("replacement");
    assert_eq!(first.state().replaces.as_ref(), Some(&leaf.id));
    let mut reread = account.order(first.url().to_string()).await.unwrap();
    assert_eq!(reread.state().replaces.as_ref(), Some(&leaf.id));
    expect_problem(
        account.new_order(&replacing()).await,
        409,
        "alreadyReplaced",
    );
    // The first replacement fails (its authorization deactivated): Let's
    // Encrypt lets the certificate be replaced again.
    {
        let mut authzs = first.authorizations();
        while let Some(authz) = authzs.next().await {
            let mut authz = authz.unwrap();
            authz.deactivate().await.expect("deactivated");
        }
    }
    assert_eq!(first.refresh().await.unwrap().status, OrderStatus::Invalid);
    let mut second = account.new_order(&replacing()).await.expect("a retry");
    let renewed = complete(&kiln, &mut second, "renew.test").await;
    assert_ne!(renewed.serial, leaf.serial);
    assert_eq!(second.state().replaces.as_ref(), Some(&leaf.id));
    // Issued: the certificate is replaced for good.
    expect_problem(
        account.new_order(&replacing()).await,
        409,
        "alreadyReplaced",
    );
    // The new certificate is a certificate of its own, replaceable once.
    let next = NewOrder::new(&ids).replaces(renewed.id.clone());
    account
        .new_order(&next)
        .await
        .expect("replacing the renewal");
    kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_replaces_a_certificate_and_only_for_its_names() {
    let kiln = TestKiln::start(None).await;
    let owner = instant::account(&kiln).await;
    let other = instant::account(&kiln).await;
    let leaf = issue(&kiln, &owner, "owned.test").await;
    let ids = dns("owned.test");
    let theirs = NewOrder::new(&ids).replaces(leaf.id.clone());
    // Let's Encrypt answers `unauthorized` for another account's certificate.
    expect_problem(other.new_order(&theirs).await, 403, "unauthorized");
    let elsewhere = dns("elsewhere.test");
    let unrelated = NewOrder::new(&elsewhere).replaces(leaf.id.clone());
    expect_problem(owner.new_order(&unrelated).await, 400, "malformed");
    // Neither refusal used up the replacement.
    owner
        .new_order(&theirs)
        .await
        .expect("the owner's replacement");
    kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_cert_ids_are_problems() {
    let kiln = TestKiln::start(None).await;
    let acme = Acme::connect(&kiln).await;
    let account = instant::account(&kiln).await;
    let leaf = issue(&kiln, &account, "known.test").await;
    let base = acme.resource("renewalInfo");
    for malformed in [
        "no-dot-here",
        ".AQ",
        "AQ.",
        "AQ.AQ==",
        "AQ.A+Q",
        "AQ.AQ.AQ",
        // 21 octets: longer than any serial (RFC 5280 §4.1.2.2).
        "AQ.AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        acme.get(&format!("{base}/{malformed}"))
            .await
            .expect_problem(400, "malformed");
    }
    let aki = &leaf.id.authority_key_identifier;
    let unknown_serial = format!("{base}/{aki}.{}", b64(&[0x01; 18]));
    acme.get(&unknown_serial)
        .await
        .expect_problem(404, "malformed");
    // The serial of a real certificate, but another issuer's key id.
    let wrong_issuer = format!("{base}/{}.{}", b64(&[7; 20]), leaf.id.serial);
    acme.get(&wrong_issuer)
        .await
        .expect_problem(404, "malformed");
    // newOrder: a malformed `replaces`, and one naming no certificate.
    let ids = dns("known.test");
    for (aki, serial) in [("not base64!", "AQ"), (aki.as_ref(), "AQEBAQ")] {
        let id = CertificateIdentifier {
            authority_key_identifier: Cow::Owned(aki.to_string()),
            serial: Cow::Owned(serial.to_string()),
        };
        expect_problem(
            account.new_order(&NewOrder::new(&ids).replaces(id)).await,
            400,
            "malformed",
        );
    }
    kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_is_to_be_renewed_now() {
    let kiln = TestKiln::start(None).await;
    let acme = Acme::connect(&kiln).await;
    let account = instant::account(&kiln).await;
    let leaf = issue(&kiln, &account, "revoked.test").await;
    assert!(window(&account, &leaf.id).await.start > OffsetDateTime::now_utc());
    acme.revoke_by_key(&leaf.key, &leaf.der, None)
        .await
        .expect_status(200);
    assert_in_the_past(&window(&account, &leaf.id).await);
    // Its replacement is welcome.
    let ids = dns("revoked.test");
    let replacing = NewOrder::new(&ids).replaces(leaf.id.clone());
    account.new_order(&replacing).await.expect("replacement");
    kiln.kiln.shutdown().await;
}

/// Runs `kiln ari renew-now ARGS…` on the Kiln's database.
fn renew_now(kiln: &TestKiln, args: &[&str]) -> std::process::Output {
    std::process::Command::new(kiln_tests::cluster::binary("kiln"))
        .args(["ari", "renew-now", "--data-dir"])
        .arg(kiln.data_dir.path())
        .args(args)
        .output()
        .expect("kiln ari renew-now")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_moves_windows_to_the_past() {
    kiln_tests::cluster::ensure_binaries_built().await;
    let kiln = TestKiln::start(None).await;
    let account = instant::account(&kiln).await;
    let marked = issue(&kiln, &account, "incident.test").await;
    let spared = issue(&kiln, &account, "spared.test").await;
    let before = window(&account, &spared.id).await;
    // The serial as `openssl x509 -serial` prints it: upper case.
    let why = "https://kiln.test/incidents/1";
    let out = renew_now(
        &kiln,
        &["--explanation-url", why, &marked.serial.to_uppercase()],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&marked.serial));
    let (info, _) = account.renewal_info(&marked.id).await.unwrap();
    assert_in_the_past(&info.suggested_window);
    assert_eq!(info.explanation_url.as_deref(), Some(why));
    let after = window(&account, &spared.id).await;
    assert_eq!((after.start, after.end), (before.start, before.end));
    // An unknown serial is reported and fails the command; the known one
    // beside it is marked all the same.
    let out = renew_now(&kiln, &[&spared.serial, "ffff00"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ffff00"),
        "{out:?}"
    );
    assert_in_the_past(&window(&account, &spared.id).await);
    // Not a serial at all: refused before anything is written.
    let out = renew_now(&kiln, &["not-hex"]);
    assert!(!out.status.success(), "{out:?}");
    kiln.kiln.shutdown().await;
}
