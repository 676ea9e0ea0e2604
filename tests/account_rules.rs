//! Black-box tests of the rules on account keys and accounts, through the
//! HTTP API: the blocklist of compromised keys (BR 6.1.1.3) that a
//! keyCompromise revocation feeds, the terms of service (RFC 8555 §7.3),
//! deactivated accounts (§7.3.6) and the weak-key rules on keyChange.
//! Every problem is checked with `Reply::expect_problem` (status, type,
//! problem+json, Replay-Nonce). Only loopback is ever contacted.

use kiln_tests::acme::{
    Account, Acme, Issued, KeyKind, Reply, compressed_p256, generate_key, p256,
};
use kiln_tests::{TestKiln, csr_der_with_key};
use openssl::pkey::{PKey, Private};
use serde_json::{Value, json};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// RFC 5280 CRLReason keyCompromise.
const KEY_COMPROMISE: i64 = 1;

async fn start() -> (TestKiln, Acme) {
    let kiln = TestKiln::start(None).await;
    let acme = Acme::connect(&kiln).await;
    (kiln, acme)
}

async fn finish(kiln: TestKiln) {
    kiln.kiln.shutdown().await;
}

fn assert_contains(detail: &str, fragment: &str) {
    assert!(
        detail.contains(fragment),
        "detail {detail:?} should mention {fragment:?}"
    );
}

/// The last path segment of a resource URL: the id the store knows it by.
fn id_of(url: &str) -> &str {
    url.rsplit('/').next().expect("a URL with a path")
}

/// Finalizes a fresh ready order of `account` for `name` with a CSR of
/// `key`, returning the reply.
async fn finalize_with_key(
    kiln: &TestKiln,
    acme: &Acme,
    account: &Account,
    name: &str,
    key: &PKey<Private>,
) -> Reply {
    let order = acme.ready_order(kiln, account, &[name]).await;
    acme.finalize(account, &order, &csr_der_with_key(&[name], key))
        .await
}

// ---- the blocklist of compromised keys ----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_compromise_revocation_blocks_the_key_for_accounts_and_csrs() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let issued = acme.issue(&kiln, &account, &["compromised.test"]).await;
    acme.revoke_by_key(&issued.cert_key, &issued.cert_der, Some(KEY_COMPROMISE))
        .await
        .expect_status(200);

    // As an account key: newAccount…
    let detail = acme
        .new_account_agreeing(&issued.cert_key)
        .await
        .expect_problem(400, "badPublicKey");
    assert_contains(&detail, "blocklist");
    // …also when only looking an account up…
    acme.new_account_reply(&issued.cert_key, &json!({"onlyReturnExisting": true}))
        .await
        .expect_problem(400, "badPublicKey");
    // …and keyChange.
    let other = acme.create_account().await;
    acme.key_change(&other, &issued.cert_key)
        .await
        .expect_problem(400, "badPublicKey");
    acme.new_order(&other, &["other-keeps-its-key.test"]).await;

    // As a certificate key, in a CSR at finalize; the order stays ready.
    let names = ["again.test"];
    let order = acme.ready_order(&kiln, &account, &names).await;
    let detail = acme
        .finalize(
            &account,
            &order,
            &csr_der_with_key(&names, &issued.cert_key),
        )
        .await
        .expect_problem(400, "badCSR");
    assert_contains(&detail, "blocklist");
    assert_eq!(
        acme.read_order(&account, &order.url).await.status(),
        "ready"
    );
    // A fresh key still works on the same order.
    acme.finalize(&account, &order, &csr_der_with_key(&names, &p256()))
        .await
        .expect_status(200);

    // Durably: the entry names the certificate.
    let digest = blocklist_name(&issued.cert_key);
    let entry = kiln.kiln.store.blocked_key(&digest).await.unwrap();
    let serial = id_of(&issued.cert_url);
    assert_eq!(
        entry.and_then(|e| e.revoked_serial).as_deref(),
        Some(serial)
    );
    finish(kiln).await;
}

/// The blocklist's name for `key`, as the api computes it.
fn blocklist_name(key: &PKey<Private>) -> store::KeyDigest {
    api::csr::key_digest(&key.public_key_to_der().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_for_another_reason_blocks_nothing() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let by_account = acme.issue(&kiln, &account, &["superseded.test"]).await;
    let by_key = acme.issue(&kiln, &account, &["ceased.test"]).await;
    acme.revoke_by_account(&account, &by_account.cert_der, Some(4))
        .await
        .expect_status(200);
    acme.revoke_by_key(&by_key.cert_key, &by_key.cert_der, Some(5))
        .await
        .expect_status(200);
    for issued in [&by_account, &by_key] {
        // Still good in a CSR (of another account's order: a CSR key may
        // not be the account's own)…
        finalize_with_key(&kiln, &acme, &account, "reused.test", &issued.cert_key)
            .await
            .expect_status(200);
        // …and as an account key.
        acme.new_account_agreeing(&issued.cert_key)
            .await
            .expect_status(201);
    }
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_compromise_must_be_signed_by_the_certificate_key() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let issued = acme.issue(&kiln, &account, &["claimed.test"]).await;
    let detail = acme
        .revoke_by_account(&account, &issued.cert_der, Some(KEY_COMPROMISE))
        .await
        .expect_problem(400, "badRevocationReason");
    assert_contains(&detail, "certificate's key");
    // Neither revoked nor blocked by that.
    assert!(
        !kiln
            .kiln
            .store
            .is_key_blocked(&blocklist_name(&issued.cert_key))
            .await
            .unwrap()
    );
    acme.revoke_by_account(&account, &issued.cert_der, None)
        .await
        .expect_status(200);
    acme.new_account_agreeing(&issued.cert_key)
        .await
        .expect_status(201);
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compromise_found_after_another_revocation_still_blocks_the_key() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let issued = acme.issue(&kiln, &account, &["later.test"]).await;
    acme.revoke_by_account(&account, &issued.cert_der, Some(4))
        .await
        .expect_status(200);
    acme.revoke_by_key(&issued.cert_key, &issued.cert_der, Some(KEY_COMPROMISE))
        .await
        .expect_status(200);
    acme.new_account_agreeing(&issued.cert_key)
        .await
        .expect_problem(400, "badPublicKey");
    let serial = id_of(&issued.cert_url);
    let cert = kiln.kiln.store.certificate(serial).await.unwrap().unwrap();
    assert_eq!(cert.revoked_reason, Some(KEY_COMPROMISE));
    // Once only.
    acme.revoke_by_key(&issued.cert_key, &issued.cert_der, Some(KEY_COMPROMISE))
        .await
        .expect_problem(400, "alreadyRevoked");
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_blocked_whatever_its_point_encoding() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let names = ["compressed-compromise.test"];
    let issued = acme
        .issue_with_key(&kiln, &account, &names, compressed_p256())
        .await;
    let cert_key = issued.cert_key;
    let leaf = openssl::x509::X509::from_der(&issued.cert_der).unwrap();
    assert_eq!(
        leaf.public_key()
            .unwrap()
            .public_key_to_der()
            .unwrap()
            .len(),
        59,
        "precondition: the certificate carries the compressed point"
    );
    acme.revoke_by_key(&cert_key, &leaf.to_der().unwrap(), Some(KEY_COMPROMISE))
        .await
        .expect_status(200);
    // The JWK has x and y: the uncompressed form of the same key.
    acme.new_account_agreeing(&cert_key)
        .await
        .expect_problem(400, "badPublicKey");
    // A CSR with the compressed point again.
    finalize_with_key(&kiln, &acme, &account, "again.test", &cert_key)
        .await
        .expect_problem(400, "badCSR");
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_blocked_key_is_refused() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let key = generate_key(KeyKind::P384);
    // The operator's command, on the running Kiln's database; no
    // certificate involved.
    kiln_tests::cluster::ensure_binaries_built().await;
    let pem = kiln.data_dir.path().join("compromised.pem");
    std::fs::write(&pem, key.public_key_to_pem().unwrap()).unwrap();
    let blocked = std::process::Command::new(kiln_tests::cluster::binary("kiln"))
        .arg("block-key")
        .arg("--data-dir")
        .arg(kiln.data_dir.path())
        .arg("--public-key")
        .arg(&pem)
        .args(["--comment", "found in a public repository"])
        .output()
        .expect("kiln block-key");
    assert!(blocked.status.success(), "{blocked:?}");
    let entry = kiln
        .kiln
        .store
        .blocked_key(&blocklist_name(&key))
        .await
        .unwrap()
        .expect("the key is on the blocklist");
    assert_eq!(entry.comment, "found in a public repository");
    assert_eq!(entry.revoked_serial, None);
    acme.new_account_agreeing(&key)
        .await
        .expect_problem(400, "badPublicKey");
    acme.key_change(&account, &key)
        .await
        .expect_problem(400, "badPublicKey");
    finalize_with_key(&kiln, &acme, &account, "operator.test", &key)
        .await
        .expect_problem(400, "badCSR");
    finish(kiln).await;
}

// ---- keyChange: the new key passes the account key rules -----------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_change_to_a_weak_key_is_bad_public_key() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let e3 = {
        use openssl::bn::BigNum;
        let rsa = openssl::rsa::Rsa::generate_with_e(2048, &BigNum::from_u32(3).unwrap()).unwrap();
        PKey::from_rsa(rsa).unwrap()
    };
    let fermat = loop {
        use pkix::weak_rsa::testing::{next_prime, prime, rsa_from_primes};
        let p = prime(1024);
        if let Some(key) = rsa_from_primes(&p, &next_prime(&p)).filter(|k| k.bits() == 2048) {
            break key;
        }
    };
    for (what, key) in [
        ("1024", generate_key(KeyKind::Rsa(1024))),
        ("65537", e3),
        ("Fermat", fermat),
    ] {
        let detail = acme
            .key_change(&account, &key)
            .await
            .expect_problem(400, "badPublicKey");
        assert_contains(&detail, what);
    }
    // None was installed: the account still signs with its old key.
    acme.new_order(&account, &["kept-its-key.test"]).await;
    finish(kiln).await;
}

// ---- deactivated accounts ----------------------------------------------------

async fn deactivate(acme: &Acme, account: &Account) {
    let reply = acme
        .post_kid(
            account,
            &account.url,
            Some(&json!({"status": "deactivated"})),
        )
        .await;
    reply.expect_status(200);
    assert_eq!(reply.body["status"], "deactivated", "{}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_accounts_key_is_unauthorized_on_new_account() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    deactivate(&acme, &account).await;
    for payload in [
        json!({"termsOfServiceAgreed": true}),
        json!({"onlyReturnExisting": true}),
    ] {
        let detail = acme
            .new_account_reply(&account.key, &payload)
            .await
            .expect_problem(403, "unauthorized");
        assert_contains(&detail, "deactivated");
    }
    // Nor for anything else (RFC 8555 §7.3.6).
    acme.new_order_reply(
        &account,
        &json!({"identifiers": [{"type": "dns", "value": "after.test"}]}),
    )
    .await
    .expect_problem(403, "unauthorized");
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivation_cancels_pending_orders_and_authorizations() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let other = acme.create_account().await;
    let pending = acme.new_order(&account, &["pending.test"]).await;
    let ready = acme.ready_order(&kiln, &account, &["ready.test"]).await;
    let issued: Issued = acme.issue(&kiln, &account, &["issued.test"]).await;
    let theirs = acme.new_order(&other, &["theirs.test"]).await;

    deactivate(&acme, &account).await;

    // The account can read nothing any more, so look in the store.
    let store = &kiln.kiln.store;
    for order in [&pending, &ready] {
        let stored = store.order(id_of(&order.url)).await.unwrap().unwrap();
        assert_eq!(stored.status.as_str(), "invalid", "{}", order.url);
        let error = stored.error.expect("a cancelled order says why");
        assert_eq!(error.kind.acme_name(), "unauthorized");
        assert_contains(&error.detail, "deactivated");
    }
    let authz = store
        .authz(id_of(&pending.authorizations()[0]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(authz.status.as_str(), "deactivated");
    // The issued order and its certificate stay as they were.
    let valid = store
        .order(id_of(&issued.order.url))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(valid.status.as_str(), "valid");
    // The deactivated account cannot read its orders.
    acme.post_as_get(&account, &pending.url)
        .await
        .expect_problem(403, "unauthorized");
    // Another account's order is untouched, as the API shows it.
    let theirs = acme.read_order(&other, &theirs.url).await;
    assert_eq!(theirs.status(), "pending");
    let authz = acme.post_as_get(&other, &theirs.authorizations()[0]).await;
    authz.expect_status(200);
    assert_eq!(authz.body["status"], "pending");
    finish(kiln).await;
}

// ---- terms of service ----------------------------------------------------------

/// An api with terms of service configured, on plain HTTP on loopback, on
/// its own SQLite store (the all-in-one `kiln` has no terms-of-service
/// setting). Enough for newAccount; nothing is ever validated or signed.
struct TosApi {
    acme: Acme,
    terms: String,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl TosApi {
    async fn start() -> TosApi {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("kiln.db").display());
        let store = store::Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let terms = format!("{base_url}/terms/v1");
        let mut config = api::ApiConfig::new(&base_url);
        config.terms_of_service = Some(terms.clone());
        let queue: Arc<dyn queue::Queue> = Arc::new(queue::MemoryQueue::new());
        let router = api::router(store, queue, config).await.unwrap();
        let server = tokio::spawn(async move {
            let service = router.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, service).await.unwrap();
        });
        let http = reqwest::Client::new();
        let directory: Value = http
            .get(format!("{base_url}/directory"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(directory["meta"]["termsOfService"], terms.as_str());
        TosApi {
            acme: Acme {
                http,
                directory,
                base_url,
            },
            terms,
            server,
            _dir: dir,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_account_must_agree_to_configured_terms_of_service() {
    let tos = TosApi::start().await;
    let acme = &tos.acme;
    let key = p256();
    for payload in [
        json!({}),
        json!({"contact": ["mailto:a@kiln.test"]}),
        json!({"termsOfServiceAgreed": false}),
    ] {
        let reply = acme.new_account_reply(&key, &payload).await;
        let detail = reply.expect_problem(400, "malformed");
        assert_contains(&detail, "termsOfServiceAgreed");
        assert_contains(&detail, &tos.terms);
        let link = format!("<{}>;rel=\"terms-of-service\"", tos.terms);
        assert!(
            reply
                .headers
                .get_all("link")
                .iter()
                .any(|v| v.to_str().ok() == Some(link.as_str())),
            "a Link to the terms: {:?}",
            reply.headers
        );
    }
    // Nothing was created by those.
    acme.new_account_reply(&key, &json!({"onlyReturnExisting": true}))
        .await
        .expect_problem(400, "accountDoesNotExist");
    let created = acme
        .new_account_reply(&key, &json!({"termsOfServiceAgreed": true}))
        .await;
    created.expect_status(201);
    // An existing account is found without agreeing again (§7.3.1).
    let found = acme.new_account_reply(&key, &json!({})).await;
    found.expect_status(200);
    assert_eq!(found.location(), created.location());
    tos.server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_terms_of_service_none_need_agreeing() {
    let (kiln, acme) = start().await;
    assert!(acme.directory["meta"]["termsOfService"].is_null());
    acme.new_account_reply(&p256(), &json!({}))
        .await
        .expect_status(201);
    finish(kiln).await;
}

/// BR 4.9.1.1: a keyCompromise revocation revokes every unexpired
/// certificate for the key, of whichever account, in the same step as the
/// block; a certificate for another key stays good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_compromise_revokes_every_certificate_for_the_key() {
    let (kiln, acme) = start().await;
    let (alice, bob) = (acme.create_account().await, acme.create_account().await);
    let shared = p256();
    let first = acme
        .issue_with_key(&kiln, &alice, &["shared-1.test"], shared.clone())
        .await;
    let second = acme
        .issue_with_key(&kiln, &bob, &["shared-2.test"], shared.clone())
        .await;
    let third = acme
        .issue_with_key(&kiln, &alice, &["shared-3.test"], shared.clone())
        .await;
    let unrelated = acme.issue(&kiln, &alice, &["unrelated.test"]).await;

    acme.revoke_by_key(&shared, &first.cert_der, Some(KEY_COMPROMISE))
        .await
        .expect_status(200);
    for issued in [&first, &second, &third] {
        let serial = id_of(&issued.cert_url);
        let cert = kiln.kiln.store.certificate(serial).await.unwrap().unwrap();
        assert!(cert.revoked_at.is_some(), "{serial} is revoked");
        assert_eq!(cert.revoked_reason, Some(KEY_COMPROMISE), "{serial}");
    }
    // Through ACME too: there is nothing left to revoke.
    acme.revoke_by_key(&shared, &second.cert_der, Some(KEY_COMPROMISE))
        .await
        .expect_problem(400, "alreadyRevoked");
    acme.revoke_by_account(&alice, &third.cert_der, None)
        .await
        .expect_problem(400, "alreadyRevoked");
    let serial = id_of(&unrelated.cert_url);
    let cert = kiln.kiln.store.certificate(serial).await.unwrap().unwrap();
    assert_eq!((cert.revoked_at, cert.revoked_reason), (None, None));
    acme.revoke_by_account(&alice, &unrelated.cert_der, None)
        .await
        .expect_status(200);
    finish(kiln).await;
}

/// RFC 8555 §7.6: an account holding valid authorizations for every name of
/// another account's certificate may revoke it; one holding them for some
/// names only, or none, may not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_with_authorizations_for_every_name_may_revoke() {
    let (kiln, acme) = start().await;
    let owner = acme.create_account().await;
    let names = ["a.authz-revoke.test", "b.authz-revoke.test"];
    let issued = acme.issue(&kiln, &owner, &names).await;

    // Valid for one of the two names: refused.
    let partial = acme.create_account().await;
    acme.ready_order(&kiln, &partial, &names[..1]).await;
    let refused = acme
        .revoke_by_account(&partial, &issued.cert_der, None)
        .await;
    refused.expect_status(403);
    assert_eq!(
        refused.body["type"],
        "urn:ietf:params:acme:error:unauthorized"
    );
    assert_contains(refused.body["detail"].as_str().unwrap(), "RFC 8555 §7.6");
    // None at all: refused too.
    let stranger = acme.create_account().await;
    acme.revoke_by_account(&stranger, &issued.cert_der, None)
        .await
        .expect_status(403);

    // Valid for both: revoked.
    let holder = acme.create_account().await;
    acme.ready_order(&kiln, &holder, &names).await;
    acme.revoke_by_account(&holder, &issued.cert_der, Some(4))
        .await
        .expect_status(200);
    let serial = id_of(&issued.cert_url);
    let record = kiln.kiln.store.certificate(serial).await.unwrap().unwrap();
    assert_eq!(record.revoked_reason, Some(4), "superseded");
    finish(kiln).await;
}
