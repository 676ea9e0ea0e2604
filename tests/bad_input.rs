//! Black-box bad-input tests: hand-built ACME requests against an
//! in-process Kiln, each asserting the exact HTTP status and problem type
//! (RFC 8555 §6.7), and that the mistake had no effect where that matters.
//!
//! Every problem is checked by `Reply::expect_problem`, which also requires
//! `application/problem+json` and a `Replay-Nonce` on the error response.

use api::jws::{jwk_of, sign_flattened};
use kiln_tests::acme::{
    Account, Acme, KeyKind, Reply, alg_for, b64, compressed_p256, generate_key, p256,
};
use kiln_tests::{TestKiln, csr_der, csr_der_with_key};
use openssl::pkey::{PKey, Private};
use reqwest::Method;
use serde_json::{Value, json};

/// One Kiln per test, and a client for it.
async fn start() -> (TestKiln, Acme) {
    let kiln = TestKiln::start(None).await;
    let acme = Acme::connect(&kiln).await;
    (kiln, acme)
}

async fn finish(kiln: TestKiln) {
    kiln.kiln.shutdown().await;
}

/// `body` (a flattened JWS) with one outer member replaced.
fn with_member(body: &str, name: &str, value: Value) -> String {
    let mut jws: Value = serde_json::from_str(body).expect("JWS JSON");
    jws[name] = value;
    jws.to_string()
}

fn decode_b64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .expect("base64url")
}

/// The account's order URLs (POST-as-GET on its `orders` list).
async fn order_urls(acme: &Acme, account: &Account) -> Vec<Value> {
    let reply = acme.post_as_get(account, &account.url).await;
    reply.expect_status(200);
    let orders_url = reply.body["orders"]
        .as_str()
        .expect("orders URL")
        .to_string();
    let list = acme.post_as_get(account, &orders_url).await;
    list.expect_status(200);
    list.body["orders"]
        .as_array()
        .expect("orders array")
        .clone()
}

fn assert_contains(detail: &str, fragment: &str) {
    assert!(
        detail.contains(fragment),
        "detail {detail:?} should mention {fragment:?}"
    );
}

// ---- JWS signature and algorithm ----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_payload_is_a_bad_signature_and_has_no_effect() {
    let (kiln, acme) = start().await;
    // newAccount (jwk): the signature covers the payload.
    let key = p256();
    let url = acme.resource("newAccount");
    let header = acme.jwk_header(&key, &url).await;
    let signed = sign_flattened(&key, "ES256", header, br#"{"contact":[]}"#);
    let forged = with_member(
        &signed,
        "payload",
        json!(b64(br#"{"contact":["mailto:evil@kiln.test"]}"#)),
    );
    let detail = acme
        .post_body(&url, forged)
        .await
        .expect_problem(400, "malformed");
    assert_contains(&detail, "signature");
    acme.new_account_reply(&key, &json!({"onlyReturnExisting": true}))
        .await
        .expect_problem(400, "accountDoesNotExist");

    // newOrder (kid): the stored account key is what verifies.
    let account = acme.create_account().await;
    let url = acme.resource("newOrder");
    let header = acme.kid_header(&account.url, &url).await;
    let good = json!({"identifiers": [{"type": "dns", "value": "a.test"}]});
    let signed = sign_flattened(&account.key, "ES256", header, good.to_string().as_bytes());
    let evil = json!({"identifiers": [{"type": "dns", "value": "b.test"}]});
    let forged = with_member(&signed, "payload", json!(b64(evil.to_string().as_bytes())));
    let detail = acme
        .post_body(&url, forged)
        .await
        .expect_problem(400, "malformed");
    assert_contains(&detail, "signature");
    assert!(
        order_urls(&acme, &account).await.is_empty(),
        "no order made"
    );
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_signature_bytes_are_rejected_for_every_key_type() {
    let (kiln, acme) = start().await;
    let url = acme.resource("newAccount");
    for kind in [
        KeyKind::P256,
        KeyKind::P384,
        KeyKind::Rsa(2048),
        KeyKind::Ed25519,
    ] {
        let key = generate_key(kind);
        let header = acme.jwk_header(&key, &url).await;
        let signed = sign_flattened(&key, alg_for(&key), header, b"{}");
        let jws: Value = serde_json::from_str(&signed).unwrap();
        let mut signature = decode_b64(jws["signature"].as_str().unwrap());
        signature[5] ^= 0x40;
        let flipped = with_member(&signed, "signature", json!(b64(&signature)));
        let detail = acme
            .post_body(&url, flipped)
            .await
            .expect_problem(400, "malformed");
        assert_contains(&detail, "signature is invalid");

        // A truncated signature, with a fresh nonce.
        let header = acme.jwk_header(&key, &url).await;
        let signed = sign_flattened(&key, alg_for(&key), header, b"{}");
        let jws: Value = serde_json::from_str(&signed).unwrap();
        let signature = decode_b64(jws["signature"].as_str().unwrap());
        let short = with_member(
            &signed,
            "signature",
            json!(b64(&signature[..signature.len() - 1])),
        );
        acme.post_body(&url, short)
            .await
            .expect_problem(400, "malformed");
        // Nothing was created for the key.
        acme.new_account_reply(&key, &json!({"onlyReturnExisting": true}))
            .await
            .expect_problem(400, "accountDoesNotExist");
    }
    finish(kiln).await;
}

/// ECDSA signatures whose r or s is out of range make OpenSSL queue an
/// error; a stale queue entry must not break the connection afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_ecdsa_signature_is_malformed_and_harmless() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let url = acme.resource("newOrder");
    let payload = json!({"identifiers": [{"type": "dns", "value": "ecdsa.test"}]});
    for round in 0..8 {
        let filler = if round % 2 == 0 { 0xff } else { 0x00 };
        let header = acme.kid_header(&account.url, &url).await;
        let signed = sign_flattened(
            &account.key,
            "ES256",
            header,
            payload.to_string().as_bytes(),
        );
        let forged = with_member(&signed, "signature", json!(b64(&[filler; 64])));
        let detail = acme
            .post_body(&url, forged)
            .await
            .expect_problem(400, "malformed");
        assert_contains(&detail, "signature is invalid");
        // The same connection keeps working.
        acme.post_as_get(&account, &account.url)
            .await
            .expect_status(200);
    }
    assert!(order_urls(&acme, &account).await.is_empty());
    finish(kiln).await;
}

/// badSignatureAlgorithm must list the acceptable algorithms (§6.2).
fn assert_bad_alg(reply: &Reply, alg: &str) {
    let detail = reply.expect_problem(400, "badSignatureAlgorithm");
    assert_contains(&detail, alg);
    let algorithms: Vec<&str> = reply.body["algorithms"]
        .as_array()
        .unwrap_or_else(|| panic!("no algorithms member: {}", reply.text))
        .iter()
        .map(|a| a.as_str().expect("algorithm names are strings"))
        .collect();
    for supported in ["ES256", "ES384", "RS256", "EdDSA"] {
        assert!(algorithms.contains(&supported), "{algorithms:?}");
    }
    assert!(
        !algorithms.contains(&alg),
        "{alg} is listed: {algorithms:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_algorithms_are_bad_signature_algorithm_with_list() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let rsa = generate_key(KeyKind::Rsa(2048));
    for alg in ["HS256", "none", "RS512", "ES512", "PS256"] {
        // jwk request with an RSA key (RS512 is otherwise plausible for it).
        let url = acme.resource("newAccount");
        let header = acme.jwk_header(&rsa, &url).await;
        let reply = acme
            .post_body(&url, sign_flattened(&rsa, alg, header, b"{}"))
            .await;
        assert_bad_alg(&reply, alg);
        // kid request.
        let url = acme.resource("newOrder");
        let header = acme.kid_header(&account.url, &url).await;
        let payload = json!({"identifiers": [{"type": "dns", "value": "alg.test"}]});
        let body = sign_flattened(&account.key, alg, header, payload.to_string().as_bytes());
        assert_bad_alg(&acme.post_body(&url, body).await, alg);
    }
    assert!(order_urls(&acme, &account).await.is_empty());
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alg_that_does_not_fit_the_key_is_bad_signature_algorithm() {
    let (kiln, acme) = start().await;
    let url = acme.resource("newAccount");
    for (kind, wrong_alg) in [
        (KeyKind::P256, "ES384"),
        (KeyKind::P384, "ES256"),
        (KeyKind::Rsa(2048), "ES256"),
        (KeyKind::Ed25519, "RS256"),
        (KeyKind::P256, "EdDSA"),
    ] {
        let key = generate_key(kind);
        let header = acme.jwk_header(&key, &url).await;
        let reply = acme
            .post_body(&url, sign_flattened(&key, wrong_alg, header, b"{}"))
            .await;
        let detail = reply.expect_problem(400, "badSignatureAlgorithm");
        assert_contains(&detail, wrong_alg);
        assert!(reply.body["algorithms"].is_array(), "{}", reply.text);
        // The same key with its own alg is a fine account key.
        acme.create_account_with(key).await;
    }
    finish(kiln).await;
}

// ---- nonces ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_nonce_is_bad_nonce_and_the_error_nonce_works() {
    let (kiln, acme) = start().await;
    let url = acme.resource("newAccount");
    let nonce = acme.nonce().await;
    let first = p256();
    let header = json!({"nonce": nonce, "url": url, "jwk": jwk_of(&first)});
    acme.post_signed(&first, &url, header, b"{}")
        .await
        .expect_status(201);

    let second = p256();
    let header = json!({"nonce": nonce, "url": url, "jwk": jwk_of(&second)});
    let reply = acme.post_signed(&second, &url, header, b"{}").await;
    let detail = reply.expect_problem(400, "badNonce");
    assert_contains(&detail, "already used");

    // §6.5: retry with the nonce the error carried.
    let fresh = reply.nonce().expect("error carries a nonce");
    assert_ne!(fresh, nonce);
    let header = json!({"nonce": fresh, "url": url, "jwk": jwk_of(&second)});
    acme.post_signed(&second, &url, header, b"{}")
        .await
        .expect_status(201);
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_and_foreign_nonces_are_bad_nonce() {
    let (kiln, acme) = start().await;
    let (other_kiln, other_acme) = start().await;
    let url = acme.resource("newAccount");
    let key = p256();
    let mut made_up = [0u8; 32];
    openssl::rand::rand_bytes(&mut made_up).unwrap();
    let foreign = other_acme.nonce().await;
    for nonce in [b64(&made_up), b64(b"short"), foreign] {
        let header = json!({"nonce": nonce, "url": url, "jwk": jwk_of(&key)});
        let detail = acme
            .post_signed(&key, &url, header, b"{}")
            .await
            .expect_problem(400, "badNonce");
        assert_contains(&detail, "not one this server issued");
    }
    finish(other_kiln).await;
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_empty_nonce_is_bad_nonce() {
    let (kiln, acme) = start().await;
    let url = acme.resource("newAccount");
    let key = p256();
    let missing = json!({"url": url, "jwk": jwk_of(&key)});
    let detail = acme
        .post_signed(&key, &url, missing, b"{}")
        .await
        .expect_problem(400, "badNonce");
    assert_contains(&detail, "no nonce");
    let empty = json!({"nonce": "", "url": url, "jwk": jwk_of(&key)});
    acme.post_signed(&key, &url, empty, b"{}")
        .await
        .expect_problem(400, "badNonce");
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonce_that_is_not_base64url_is_malformed() {
    // RFC 8555 §6.5.2: not base64url → malformed, not badNonce.
    let (kiln, acme) = start().await;
    let url = acme.resource("newAccount");
    let key = p256();
    let header = json!({"nonce": "not base64!", "url": url, "jwk": jwk_of(&key)});
    let detail = acme
        .post_signed(&key, &url, header, b"{}")
        .await
        .expect_problem(400, "malformed");
    assert_contains(&detail, "nonce");
    let numeric = json!({"nonce": 12, "url": url, "jwk": jwk_of(&key)});
    acme.post_signed(&key, &url, numeric, b"{}")
        .await
        .expect_problem(400, "malformed");
    finish(kiln).await;
}

// ---- url, jwk and kid -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_header_must_be_the_request_url() {
    let (kiln, acme) = start().await;
    let key = p256();
    let new_account = acme.resource("newAccount");
    for signed_for in [
        acme.resource("newOrder"),
        "https://evil.test/acme/new-account".to_string(),
        format!("{new_account}/"),
    ] {
        let header = acme.jwk_header(&key, &signed_for).await;
        let detail = acme
            .post_signed(&key, &new_account, header, b"{}")
            .await
            .expect_problem(403, "unauthorized");
        assert_contains(&detail, "url");
    }
    // A kid request replayed to another account resource.
    let account = acme.create_account().await;
    let order = acme.new_order(&account, &["url.test"]).await;
    let header = acme.kid_header(&account.url, &order.url).await;
    acme.post_signed(&account.key, &account.url, header, b"")
        .await
        .expect_problem(403, "unauthorized");
    // No url at all.
    let header = json!({"nonce": acme.nonce().await, "jwk": jwk_of(&key)});
    let detail = acme
        .post_signed(&key, &new_account, header, b"{}")
        .await
        .expect_problem(400, "malformed");
    assert_contains(&detail, "no url");
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kid_of_another_account_does_not_verify() {
    let (kiln, acme) = start().await;
    let alice = acme.create_account().await;
    let bob = acme.create_account().await;
    let url = acme.resource("newOrder");
    // Signed by Alice's key, claiming to be Bob.
    let header = acme.kid_header(&bob.url, &url).await;
    let payload = json!({"identifiers": [{"type": "dns", "value": "bob.test"}]});
    let detail = acme
        .post_signed(&alice.key, &url, header, payload.to_string().as_bytes())
        .await
        .expect_problem(400, "malformed");
    assert_contains(&detail, "signature is invalid");
    assert!(order_urls(&acme, &bob).await.is_empty());
    assert!(order_urls(&acme, &alice).await.is_empty());
    // Same with a key of another type: then the alg does not fit Bob's key.
    let rsa_account = acme
        .create_account_with(generate_key(KeyKind::Rsa(2048)))
        .await;
    let header = acme.kid_header(&bob.url, &url).await;
    acme.post_signed(
        &rsa_account.key,
        &url,
        header,
        payload.to_string().as_bytes(),
    )
    .await
    .expect_problem(400, "badSignatureAlgorithm");
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_jwk_and_kid_or_neither_is_malformed() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    for url in [acme.resource("newAccount"), acme.resource("newOrder")] {
        let mut both = acme.kid_header(&account.url, &url).await;
        both["jwk"] = jwk_of(&account.key);
        let detail = acme
            .post_signed(&account.key, &url, both, b"{}")
            .await
            .expect_problem(400, "malformed");
        assert_contains(&detail, "both jwk and kid");

        let neither = json!({"nonce": acme.nonce().await, "url": url});
        let detail = acme
            .post_signed(&account.key, &url, neither, b"{}")
            .await
            .expect_problem(400, "malformed");
        assert_contains(&detail, "neither jwk nor kid");
    }
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwk_on_a_kid_endpoint_is_malformed() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let order = acme.new_order(&account, &["jwk.test"]).await;
    // The account's own key, but as jwk: kid endpoints need the account URL.
    let payload = json!({"identifiers": [{"type": "dns", "value": "jwk.test"}]});
    let detail = acme
        .post_jwk(&account.key, &acme.resource("newOrder"), Some(&payload))
        .await
        .expect_problem(400, "malformed");
    assert_contains(&detail, "kid");
    for url in [
        order.url.clone(),
        account.url.clone(),
        order.authorizations()[0].clone(),
    ] {
        acme.post_jwk(&account.key, &url, None)
            .await
            .expect_problem(400, "malformed");
    }
    assert_eq!(order_urls(&acme, &account).await.len(), 1);
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kid_on_new_account_is_malformed() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let url = acme.resource("newAccount");
    let header = acme.kid_header(&account.url, &url).await;
    let detail = acme
        .post_signed(&account.key, &url, header, b"{}")
        .await
        .expect_problem(400, "malformed");
    assert_contains(&detail, "jwk");
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kid_that_is_not_an_account_url_is_malformed() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let order = acme.new_order(&account, &["kid.test"]).await;
    let id = account.url.rsplit('/').next().unwrap().to_string();
    for kid in [
        format!("https://evil.test/acme/acct/{id}"),
        order.url.clone(),
        acme.url("/acme/acct/"),
        format!("{}/orders", account.url),
        id,
    ] {
        let url = acme.resource("newOrder");
        let header = acme.kid_header(&kid, &url).await;
        let detail = acme
            .post_signed(&account.key, &url, header, b"{}")
            .await
            .expect_problem(400, "malformed");
        assert_contains(&detail, "kid");
    }
    // An empty kid.
    let url = acme.resource("newOrder");
    let header = acme.kid_header("", &url).await;
    acme.post_signed(&account.key, &url, header, b"{}")
        .await
        .expect_problem(400, "malformed");
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kid_of_a_nonexistent_account_is_account_does_not_exist() {
    let (kiln, acme) = start().await;
    let key = p256();
    let url = acme.resource("newOrder");
    let header = acme
        .kid_header(&acme.url("/acme/acct/nosuchaccount"), &url)
        .await;
    let payload = json!({"identifiers": [{"type": "dns", "value": "ghost.test"}]});
    acme.post_signed(&key, &url, header, payload.to_string().as_bytes())
        .await
        .expect_problem(400, "accountDoesNotExist");
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivated_account_is_unauthorized() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let order = acme.new_order(&account, &["gone.test"]).await;
    let reply = acme
        .post_kid(
            &account,
            &account.url,
            Some(&json!({"status": "deactivated"})),
        )
        .await;
    reply.expect_status(200);
    assert_eq!(reply.body["status"], "deactivated", "{}", reply.text);

    let payload = json!({"identifiers": [{"type": "dns", "value": "gone.test"}]});
    let detail = acme
        .new_order_reply(&account, &payload)
        .await
        .expect_problem(403, "unauthorized");
    assert_contains(&detail, "deactivated");
    acme.post_as_get(&account, &order.url)
        .await
        .expect_problem(403, "unauthorized");
    acme.post_kid(
        &account,
        &account.url,
        Some(&json!({"status": "deactivated"})),
    )
    .await
    .expect_problem(403, "unauthorized");
    finish(kiln).await;
}

// ---- transport: content type, body, paths, methods --------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_content_type_is_415_malformed() {
    let (kiln, acme) = start().await;
    let key = p256();
    let url = acme.resource("newAccount");
    for content_type in [
        Some("application/json"),
        Some("text/plain"),
        Some("application/jose"),
        None,
    ] {
        let header = acme.jwk_header(&key, &url).await;
        let body = sign_flattened(&key, "ES256", header, b"{}");
        let detail = acme
            .send(Method::POST, &url, content_type, body)
            .await
            .expect_problem(415, "malformed");
        assert_contains(&detail, "application/jose+json");
    }
    // A parameter on the right type is fine.
    let header = acme.jwk_header(&key, &url).await;
    let body = sign_flattened(&key, "ES256", header, b"{}");
    acme.send(
        Method::POST,
        &url,
        Some("application/jose+json; charset=utf-8"),
        body,
    )
    .await
    .expect_status(201);
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_that_is_not_a_flattened_jws_is_malformed() {
    let (kiln, acme) = start().await;
    let key = p256();
    let url = acme.resource("newAccount");
    let header = acme.jwk_header(&key, &url).await;
    let good = sign_flattened(&key, "ES256", header, b"{}");
    let jws: Value = serde_json::from_str(&good).unwrap();
    let compact = format!(
        "{}.{}.{}",
        jws["protected"].as_str().unwrap(),
        jws["payload"].as_str().unwrap(),
        jws["signature"].as_str().unwrap()
    );
    let general = json!({
        "payload": jws["payload"],
        "signatures": [{"protected": jws["protected"], "signature": jws["signature"]}],
    })
    .to_string();
    for body in [
        "not json".to_string(),
        String::new(),
        "[]".to_string(),
        "{}".to_string(),
        compact,
        general,
        with_member(&good, "header", json!({"kid": "x"})),
        with_member(&good, "payload", json!(42)),
        with_member(&good, "protected", json!("!!!")),
        with_member(&good, "protected", json!(b64(b"[1,2]"))),
    ] {
        acme.post_body(&url, body)
            .await
            .expect_problem(400, "malformed");
    }
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_that_is_not_the_expected_json_is_malformed() {
    let (kiln, acme) = start().await;
    let key = p256();
    let url = acme.resource("newAccount");
    for payload in [
        &b"not json"[..],
        b"[1]",
        br#"{"contact":"mailto:a@kiln.test"}"#,
    ] {
        let header = acme.jwk_header(&key, &url).await;
        let detail = acme
            .post_signed(&key, &url, header, payload)
            .await
            .expect_problem(400, "malformed");
        assert_contains(&detail, "payload");
    }
    let account = acme.create_account_with(key).await;
    for payload in [
        json!({}),
        json!({"identifiers": "a.test"}),
        json!({"identifiers": [{"type": "dns"}]}),
        json!({"identifiers": [{"value": "a.test"}]}),
    ] {
        acme.new_order_reply(&account, &payload)
            .await
            .expect_problem(400, "malformed");
    }
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_as_get_resources_refuse_a_payload() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let order = acme.new_order(&account, &["pag.test"]).await;
    for payload in [json!({}), json!({"status": "valid"})] {
        let detail = acme
            .post_kid(&account, &order.url, Some(&payload))
            .await
            .expect_problem(400, "malformed");
        assert_contains(&detail, "POST-as-GET");
    }
    let orders_url = format!("{}/orders", account.url);
    acme.post_kid(&account, &orders_url, Some(&json!({})))
        .await
        .expect_problem(400, "malformed");
    acme.post_kid(&account, &acme.url("/acme/cert/01"), Some(&json!({})))
        .await
        .expect_problem(400, "malformed");
    // The order itself is untouched.
    assert_eq!(
        acme.read_order(&account, &order.url).await.status(),
        "pending"
    );
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_resources_are_404_malformed() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    for path in ["/nope", "/acme/nope", "/acme/order/a/b", "/directory/x"] {
        acme.get(&acme.url(path))
            .await
            .expect_problem(404, "malformed");
        acme.post_kid(&account, &acme.url(path), None)
            .await
            .expect_problem(404, "malformed");
    }
    for path in [
        "/acme/order/nosuchorder",
        "/acme/authz/nosuchauthz",
        "/acme/chall/nosuchchall",
        "/acme/cert/00ff",
    ] {
        acme.post_as_get(&account, &acme.url(path))
            .await
            .expect_problem(404, "malformed");
    }
    acme.post_kid(
        &account,
        &acme.url("/acme/finalize/nosuchorder"),
        Some(&json!({"csr": b64(&csr_der(&["x.test"]))})),
    )
    .await
    .expect_problem(404, "malformed");
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_is_405_malformed() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let order = acme.new_order(&account, &["method.test"]).await;
    for url in [
        acme.resource("newAccount"),
        acme.resource("newOrder"),
        acme.resource("revokeCert"),
        acme.resource("keyChange"),
        order.url.clone(),
        account.url.clone(),
    ] {
        let reply = acme.get(&url).await;
        reply.expect_problem(405, "malformed");
        let allow = reply.header("allow").unwrap_or_default();
        assert!(allow.contains("POST"), "405 for {url} has Allow {allow:?}");
    }
    for (method, url) in [
        (Method::PUT, acme.resource("newOrder")),
        (Method::DELETE, order.url.clone()),
        (Method::POST, acme.url("/directory")),
        (Method::POST, acme.resource("newNonce")),
    ] {
        acme.send(method, &url, Some("application/jose+json"), "{}")
            .await
            .expect_problem(405, "malformed");
    }
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_a_413_problem() {
    let (kiln, acme) = start().await;
    let reply = acme
        .post_body(&acme.resource("newAccount"), vec![b'{'; 3 << 20])
        .await;
    reply.expect_problem(413, "malformed");
    // The connection and the server are fine afterwards.
    acme.create_account().await;
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_id_that_is_not_utf8_is_a_problem() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    for path in [
        "/acme/order/%ff",
        "/acme/authz/%c3%28",
        "/acme/cert/%80",
        "/acme/acct/%ff/orders",
    ] {
        acme.post_as_get(&account, &acme.url(path))
            .await
            .expect_problem(400, "malformed");
    }
    finish(kiln).await;
}

// ---- accounts -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_1024_account_key_is_bad_public_key() {
    let (kiln, acme) = start().await;
    let key = generate_key(KeyKind::Rsa(1024));
    let detail = acme
        .new_account_reply(&key, &json!({"termsOfServiceAgreed": true}))
        .await
        .expect_problem(400, "badPublicKey");
    assert_contains(&detail, "1024");
    finish(kiln).await;
}

/// RSA keys of the right size with a known weakness (BR 6.1.1.3): two
/// primes close enough for Fermat's method, and two with the structure of
/// the Infineon (ROCA) generator's.
fn weak_rsa_keys() -> Vec<(&'static str, PKey<Private>)> {
    use pkix::weak_rsa::testing::{next_prime, prime, roca_style_prime, rsa_from_primes};
    // Two 1024-bit primes make a 2047- or 2048-bit modulus: keep 2048.
    let full_size = |key: Option<PKey<Private>>| key.filter(|k| k.bits() == 2048);
    let fermat = loop {
        let p = prime(1024);
        if let Some(key) = full_size(rsa_from_primes(&p, &next_prime(&p))) {
            break key;
        }
    };
    let roca = loop {
        let (p, q) = (roca_style_prime(1024), roca_style_prime(1024));
        if let Some(key) = rsa_from_primes(&p, &q) {
            assert_eq!(key.bits(), 2048);
            break key;
        }
    };
    vec![("Fermat", fermat), ("ROCA", roca)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_rsa_account_keys_are_bad_public_key() {
    let (kiln, acme) = start().await;
    for (weakness, key) in weak_rsa_keys() {
        let detail = acme
            .new_account_reply(&key, &json!({"termsOfServiceAgreed": true}))
            .await
            .expect_problem(400, "badPublicKey");
        assert_contains(&detail, weakness);
    }
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_rsa_certificate_keys_are_bad_csr() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let names = ["weak.test"];
    let order = acme.ready_order(&kiln, &account, &names).await;
    for (weakness, key) in weak_rsa_keys() {
        let csr = csr_der_with_key(&names, &key);
        let detail = expect_bad_csr(&acme, &account, &order, &b64(&csr)).await;
        assert_contains(&detail, weakness);
    }
    assert_eq!(
        acme.read_order(&account, &order.url).await.status(),
        "ready",
        "a refused CSR leaves the order as it was"
    );
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_return_existing_for_an_unknown_key_is_account_does_not_exist() {
    let (kiln, acme) = start().await;
    let key = p256();
    acme.new_account_reply(&key, &json!({"onlyReturnExisting": true}))
        .await
        .expect_problem(400, "accountDoesNotExist");
    // It did not create one either; afterwards the lookup finds the account.
    let account = acme.create_account_with(key).await;
    let reply = acme
        .new_account_reply(&account.key, &json!({"onlyReturnExisting": true}))
        .await;
    reply.expect_status(200);
    assert_eq!(reply.location(), account.url);
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_mailto_contact_is_unsupported_contact() {
    let (kiln, acme) = start().await;
    for contact in ["tel:+15555550100", "https://kiln.test/me", "a@kiln.test"] {
        let key = p256();
        let detail = acme
            .new_account_reply(&key, &json!({"contact": [contact]}))
            .await
            .expect_problem(400, "unsupportedContact");
        assert_contains(&detail, contact);
    }
    // The same rule on an update.
    let account = acme.create_account().await;
    acme.post_kid(
        &account,
        &account.url,
        Some(&json!({"contact": ["tel:+1555"]})),
    )
    .await
    .expect_problem(400, "unsupportedContact");
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_mailto_contact_is_invalid_contact() {
    let (kiln, acme) = start().await;
    for contact in [
        "mailto:",
        "mailto:nobody",
        "mailto:@kiln.test",
        "mailto:a@localhost",
        "mailto:a@b@kiln.test",
        "mailto:a@kiln.test?subject=hi",
        "mailto:a@kiln.test,b@kiln.test",
    ] {
        let key = p256();
        acme.new_account_reply(&key, &json!({"contact": [contact]}))
            .await
            .expect_problem(400, "invalidContact");
        acme.new_account_reply(&key, &json!({"onlyReturnExisting": true}))
            .await
            .expect_problem(400, "accountDoesNotExist");
    }
    let many: Vec<String> = (0..11).map(|i| format!("mailto:u{i}@kiln.test")).collect();
    acme.new_account_reply(&p256(), &json!({"contact": many}))
        .await
        .expect_problem(400, "invalidContact");
    let account = acme.create_account().await;
    acme.post_kid(
        &account,
        &account.url,
        Some(&json!({"contact": ["mailto:x"]})),
    )
    .await
    .expect_problem(400, "invalidContact");
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_status_other_than_deactivated_is_malformed() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    for status in ["valid", "revoked", "bogus"] {
        acme.post_kid(&account, &account.url, Some(&json!({"status": status})))
            .await
            .expect_problem(400, "malformed");
    }
    let reply = acme.post_as_get(&account, &account.url).await;
    reply.expect_status(200);
    assert_eq!(reply.body["status"], "valid");
    finish(kiln).await;
}

/// §6.4: `url` is the exact request URL, so a paginated orders list is
/// read by signing the `next` link, query and all (§7.1.2.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_pages_are_signed_with_their_query_and_bad_pages_refused() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let identifiers = json!({"identifiers": [{"type": "dns", "value": "page.test"}]});
    for _ in 0..101 {
        acme.new_order_reply(&account, &identifiers)
            .await
            .expect_status(201);
    }
    let orders_url = format!("{}/orders", account.url);
    let first = acme.post_as_get(&account, &orders_url).await;
    first.expect_status(200);
    assert_eq!(first.body["orders"].as_array().unwrap().len(), 100);
    let next = first
        .headers
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|l| l.contains("rel=\"next\""))
        .and_then(|l| l.split(['<', '>']).nth(1))
        .unwrap_or_else(|| panic!("no next link: {:?}", first.headers))
        .to_string();
    let second = acme.post_as_get(&account, &next).await;
    second.expect_status(200);
    let mut all: Vec<Value> = first.body["orders"].as_array().unwrap().clone();
    all.extend(second.body["orders"].as_array().unwrap().iter().cloned());
    all.sort_by_key(|v| v.to_string());
    all.dedup();
    assert_eq!(all.len(), 101, "both pages hold every order once");

    // Signed for one page, sent to another.
    let header = acme.kid_header(&account.url, &orders_url).await;
    acme.post_signed(&account.key, &next, header, b"")
        .await
        .expect_problem(403, "unauthorized");
    for page in ["-1", "99999999999999999"] {
        let detail = acme
            .post_as_get(&account, &format!("{orders_url}?page={page}"))
            .await
            .expect_problem(400, "malformed");
        assert_contains(&detail, page);
    }
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_accounts_account_resources_are_unauthorized() {
    let (kiln, acme) = start().await;
    let alice = acme.create_account().await;
    let bob = acme.create_account().await;
    acme.post_as_get(&alice, &bob.url)
        .await
        .expect_problem(403, "unauthorized");
    acme.post_kid(&alice, &bob.url, Some(&json!({"status": "deactivated"})))
        .await
        .expect_problem(403, "unauthorized");
    acme.post_as_get(&alice, &format!("{}/orders", bob.url))
        .await
        .expect_problem(403, "unauthorized");
    let reply = acme.post_as_get(&bob, &bob.url).await;
    reply.expect_status(200);
    assert_eq!(reply.body["status"], "valid", "Bob is still valid");
    finish(kiln).await;
}

// ---- new orders -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_identifier_type_is_unsupported_identifier() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    // `dns` and `ip` (RFC 8738) are the types; nothing else, in any case.
    for kind in ["IP", "email", "DNS", ""] {
        let payload = json!({"identifiers": [
            {"type": "dns", "value": "fine.test"},
            {"type": kind, "value": "127.0.0.1"},
        ]});
        let detail = acme
            .new_order_reply(&account, &payload)
            .await
            .expect_problem(400, "unsupportedIdentifier");
        assert_contains(&detail, &format!("{kind:?}"));
    }
    assert!(order_urls(&acme, &account).await.is_empty());
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_dns_names_are_rejected_identifier_with_subproblems() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    for bad in [
        "under_score.test",
        "localhost",
        "127.0.0.1",
        "-lead.test",
        "a..test",
        "*.*.test",
        "sub.*.test",
        "",
        "a.123",
    ] {
        let payload = json!({"identifiers": [
            {"type": "dns", "value": "fine.test"},
            {"type": "dns", "value": bad},
        ]});
        let reply = acme.new_order_reply(&account, &payload).await;
        reply.expect_problem(400, "rejectedIdentifier");
        let subproblems = reply.body["subproblems"]
            .as_array()
            .unwrap_or_else(|| panic!("{bad:?}: no subproblems: {}", reply.text));
        assert_eq!(subproblems.len(), 1, "only {bad:?} is bad: {}", reply.text);
        assert_eq!(
            subproblems[0]["type"], "urn:ietf:params:acme:error:rejectedIdentifier",
            "{}",
            reply.text
        );
        assert_eq!(
            subproblems[0]["identifier"],
            json!({"type": "dns", "value": bad}),
            "{}",
            reply.text
        );
    }
    assert!(order_urls(&acme, &account).await.is_empty());
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_or_too_many_identifiers_are_refused() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let detail = acme
        .new_order_reply(&account, &json!({"identifiers": []}))
        .await
        .expect_problem(400, "malformed");
    assert_contains(&detail, "at least one identifier");
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"type": "dns", "value": format!("n{i}.test")}))
        .collect();
    let detail = acme
        .new_order_reply(&account, &json!({"identifiers": many}))
        .await
        .expect_problem(400, "rejectedIdentifier");
    assert_contains(&detail, "100");
    assert!(order_urls(&acme, &account).await.is_empty());
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_before_or_not_after_is_malformed() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    for extra in ["notBefore", "notAfter"] {
        let mut payload = json!({"identifiers": [{"type": "dns", "value": "time.test"}]});
        payload[extra] = json!("2030-01-01T00:00:00Z");
        let detail = acme
            .new_order_reply(&account, &payload)
            .await
            .expect_problem(400, "malformed");
        assert_contains(&detail, extra);
    }
    assert!(order_urls(&acme, &account).await.is_empty());
    finish(kiln).await;
}

// ---- other accounts' orders, authorizations, challenges, certificates ------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_accounts_order_authz_and_challenge_are_unauthorized() {
    let (kiln, acme) = start().await;
    let alice = acme.create_account().await;
    let mallory = acme.create_account().await;
    let order = acme.new_order(&alice, &["alice.test"]).await;
    let authz_url = order.authorizations()[0].clone();
    let (challenge_url, _) = acme.http01_challenge(&alice, &authz_url).await;

    let detail = acme
        .post_as_get(&mallory, &order.url)
        .await
        .expect_problem(403, "unauthorized");
    assert_contains(&detail, "another account");
    acme.post_as_get(&mallory, &authz_url)
        .await
        .expect_problem(403, "unauthorized");
    acme.post_kid(
        &mallory,
        &authz_url,
        Some(&json!({"status": "deactivated"})),
    )
    .await
    .expect_problem(403, "unauthorized");
    acme.post_as_get(&mallory, &challenge_url)
        .await
        .expect_problem(403, "unauthorized");
    acme.post_kid(&mallory, &challenge_url, Some(&json!({})))
        .await
        .expect_problem(403, "unauthorized");
    acme.finalize(&mallory, &order, &csr_der(&["alice.test"]))
        .await
        .expect_problem(403, "unauthorized");

    // None of it touched Alice's resources.
    assert_eq!(
        acme.read_order(&alice, &order.url).await.status(),
        "pending"
    );
    let authz = acme.post_as_get(&alice, &authz_url).await;
    authz.expect_status(200);
    assert_eq!(authz.body["status"], "pending");
    let challenge = acme.post_as_get(&alice, &challenge_url).await;
    challenge.expect_status(200);
    assert_eq!(challenge.body["status"], "pending");
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_accounts_certificate_is_unauthorized() {
    let (kiln, acme) = start().await;
    let alice = acme.create_account().await;
    let mallory = acme.create_account().await;
    let issued = acme.issue(&kiln, &alice, &["cert.test"]).await;
    acme.post_as_get(&mallory, &issued.cert_url)
        .await
        .expect_problem(403, "unauthorized");
    acme.post_as_get(&mallory, &issued.order.url)
        .await
        .expect_problem(403, "unauthorized");
    acme.post_as_get(&alice, &issued.cert_url)
        .await
        .expect_status(200);
    finish(kiln).await;
}

// ---- finalize -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_before_ready_is_order_not_ready() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let order = acme.new_order(&account, &["early.test"]).await;
    let detail = acme
        .finalize(&account, &order, &csr_der(&["early.test"]))
        .await
        .expect_problem(403, "orderNotReady");
    assert_contains(&detail, "pending");
    assert_eq!(
        acme.read_order(&account, &order.url).await.status(),
        "pending"
    );
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_finalize_is_order_not_ready_and_the_first_completes() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let names = ["twice.test", "www.twice.test"];
    let order = acme.ready_order(&kiln, &account, &names).await;
    let first = acme.finalize(&account, &order, &csr_der(&names)).await;
    first.expect_status(200);
    assert_eq!(first.body["status"], "processing", "{}", first.text);

    let detail = acme
        .finalize(&account, &order, &csr_der(&names))
        .await
        .expect_problem(403, "orderNotReady");
    assert!(
        detail.contains("processing") || detail.contains("valid"),
        "{detail}"
    );
    let done = acme.poll_order(&account, &order.url, "valid").await;
    let cert_url = done.body["certificate"].as_str().expect("certificate URL");
    acme.post_as_get(&account, cert_url)
        .await
        .expect_status(200);
    // Once valid, still not finalizable.
    acme.finalize(&account, &order, &csr_der(&names))
        .await
        .expect_problem(403, "orderNotReady");
    finish(kiln).await;
}

/// Finalizes a ready order with `csr` and expects badCSR; the order must
/// stay ready. Returns the detail.
async fn expect_bad_csr(
    acme: &Acme,
    account: &Account,
    order: &kiln_tests::acme::Order,
    csr: &str,
) -> String {
    let detail = acme
        .finalize_b64(account, order, csr)
        .await
        .expect_problem(400, "badCSR");
    assert_eq!(
        acme.read_order(account, &order.url).await.status(),
        "ready",
        "a refused CSR leaves the order ready"
    );
    detail
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csr_names_must_equal_the_order() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let names = ["csr.test", "www.csr.test"];
    let order = acme.ready_order(&kiln, &account, &names).await;

    let extra = csr_der(&["csr.test", "www.csr.test", "extra.test"]);
    let detail = expect_bad_csr(&acme, &account, &order, &b64(&extra)).await;
    assert_contains(&detail, "extra.test");

    let missing = csr_der(&["csr.test"]);
    let detail = expect_bad_csr(&acme, &account, &order, &b64(&missing)).await;
    assert_contains(&detail, "www.csr.test");

    // The right CSR still works afterwards.
    acme.finalize(&account, &order, &csr_der(&names))
        .await
        .expect_status(200);
    acme.poll_order(&account, &order.url, "valid").await;
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csr_with_the_account_key_or_a_weak_key_is_bad_csr() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let names = ["key.test"];
    let order = acme.ready_order(&kiln, &account, &names).await;

    let same_key = csr_der_with_key(&names, &account.key);
    let detail = expect_bad_csr(&acme, &account, &order, &b64(&same_key)).await;
    assert_contains(&detail, "account key");

    let rsa1024 = generate_key(KeyKind::Rsa(1024));
    let weak = csr_der_with_key(&names, &rsa1024);
    let detail = expect_bad_csr(&acme, &account, &order, &b64(&weak)).await;
    assert_contains(&detail, "1024");
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_csr_is_bad_csr() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let names = ["garbage.test"];
    let order = acme.ready_order(&kiln, &account, &names).await;
    let good = csr_der(&names);
    let mut trailing = good.clone();
    trailing.push(0);
    let mut bad_signature = good.clone();
    *bad_signature.last_mut().unwrap() ^= 0x01;
    for csr in [
        "not base64!".to_string(),
        format!("{}==", b64(&good)),
        b64(b"definitely not DER"),
        b64(&good[..good.len() / 2]),
        b64(&trailing),
        b64(&bad_signature),
        String::new(),
    ] {
        expect_bad_csr(&acme, &account, &order, &csr).await;
    }
    // Not a csr member at all: malformed.
    acme.post_kid(&account, &order.finalize_url(), Some(&json!({"csr": 7})))
        .await
        .expect_problem(400, "malformed");
    acme.post_kid(&account, &order.finalize_url(), Some(&json!({})))
        .await
        .expect_problem(400, "malformed");
    acme.post_as_get(&account, &order.finalize_url())
        .await
        .expect_problem(400, "malformed");
    assert_eq!(
        acme.read_order(&account, &order.url).await.status(),
        "ready"
    );
    finish(kiln).await;
}

/// A CSR whose self-signature fails makes OpenSSL queue an error; a stale
/// queue entry must not break the connection afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csr_with_a_bad_self_signature_is_bad_csr_and_harmless() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let names = ["selfsig.test"];
    let order = acme.ready_order(&kiln, &account, &names).await;
    for _ in 0..6 {
        let mut csr = csr_der(&names);
        *csr.last_mut().unwrap() ^= 0x01;
        let detail = expect_bad_csr(&acme, &account, &order, &b64(&csr)).await;
        assert_contains(&detail, "signature");
    }
    acme.finalize(&account, &order, &csr_der(&names))
        .await
        .expect_status(200);
    acme.poll_order(&account, &order.url, "valid").await;
    finish(kiln).await;
}

// ---- revocation ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disallowed_revocation_reason_is_bad_revocation_reason() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let issued = acme.issue(&kiln, &account, &["reason.test"]).await;
    for reason in [2, 6, 7, 8, 9, 10, 11, -1] {
        let detail = acme
            .revoke_by_account(&account, &issued.cert_der, Some(reason))
            .await
            .expect_problem(400, "badRevocationReason");
        assert_contains(&detail, &reason.to_string());
    }
    // Not revoked by any of that.
    acme.revoke_by_account(&account, &issued.cert_der, Some(4))
        .await
        .expect_status(200);
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_twice_is_already_revoked() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let issued = acme.issue(&kiln, &account, &["twice-revoked.test"]).await;
    acme.revoke_by_account(&account, &issued.cert_der, None)
        .await
        .expect_status(200);
    acme.revoke_by_account(&account, &issued.cert_der, Some(1))
        .await
        .expect_problem(400, "alreadyRevoked");
    acme.revoke_by_key(&issued.cert_key, &issued.cert_der, None)
        .await
        .expect_problem(400, "alreadyRevoked");
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_by_an_unrelated_account_or_key_is_unauthorized() {
    let (kiln, acme) = start().await;
    let owner = acme.create_account().await;
    let stranger = acme.create_account().await;
    let issued = acme.issue(&kiln, &owner, &["mine.test"]).await;
    acme.revoke_by_account(&stranger, &issued.cert_der, None)
        .await
        .expect_problem(403, "unauthorized");
    // A jwk that is neither the certificate key nor of any account…
    let detail = acme
        .revoke_by_key(&p256(), &issued.cert_der, None)
        .await
        .expect_problem(403, "unauthorized");
    assert_contains(&detail, "certificate");
    // …nor an account key used as jwk.
    acme.revoke_by_key(&stranger.key, &issued.cert_der, None)
        .await
        .expect_problem(403, "unauthorized");
    // Still revocable by its owner: the attempts changed nothing.
    acme.revoke_by_account(&owner, &issued.cert_der, None)
        .await
        .expect_status(200);
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_by_the_certificate_key_succeeds() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let issued = acme.issue(&kiln, &account, &["by-key.test"]).await;
    acme.revoke_by_key(&issued.cert_key, &issued.cert_der, Some(1))
        .await
        .expect_status(200);
    acme.revoke_by_account(&account, &issued.cert_der, None)
        .await
        .expect_problem(400, "alreadyRevoked");
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_by_a_compressed_point_certificate_key_succeeds() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    let names = ["compressed.test"];
    let issued = acme
        .issue_with_key(&kiln, &account, &names, compressed_p256())
        .await;
    let cert_key = issued.cert_key;
    let leaf = openssl::x509::X509::from_der(&issued.cert_der).unwrap();
    let spki = leaf.public_key().unwrap().public_key_to_der().unwrap();
    let jwk = api::jwk::Jwk::from_value(&jwk_of(&cert_key)).unwrap();
    assert_ne!(
        spki,
        jwk.public_key_spki_der(),
        "precondition: the certificate's SPKI bytes differ from the JWK's"
    );
    assert!(leaf.public_key().unwrap().public_eq(jwk.public_key()));
    // The same key, so the request is authorized (RFC 8555 §7.6).
    acme.revoke_by_key(&cert_key, &leaf.to_der().unwrap(), None)
        .await
        .expect_status(200);
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_garbage_or_a_foreign_certificate_is_refused() {
    let (kiln, acme) = start().await;
    let account = acme.create_account().await;
    for payload in [
        json!({"certificate": "not base64!"}),
        json!({"certificate": b64(b"not DER")}),
        json!({"certificate": 7}),
        json!({}),
    ] {
        acme.post_kid(&account, &acme.resource("revokeCert"), Some(&payload))
            .await
            .expect_problem(400, "malformed");
    }
    // A certificate this CA never issued.
    let key = p256();
    let mut name = openssl::x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "foreign.test").unwrap();
    let name = name.build();
    let mut builder = openssl::x509::X509::builder().unwrap();
    builder.set_version(2).unwrap();
    builder.set_subject_name(&name).unwrap();
    builder.set_issuer_name(&name).unwrap();
    builder.set_pubkey(&key).unwrap();
    builder
        .set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    builder
        .set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    builder
        .sign(&key, openssl::hash::MessageDigest::sha256())
        .unwrap();
    let foreign = builder.build().to_der().unwrap();
    acme.revoke_by_account(&account, &foreign, None)
        .await
        .expect_problem(404, "malformed");
    acme.revoke_by_key(&key, &foreign, None)
        .await
        .expect_problem(404, "malformed");
    finish(kiln).await;
}

// ---- keyChange ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_change_to_another_accounts_key_is_409_with_its_location() {
    let (kiln, acme) = start().await;
    let alice = acme.create_account().await;
    let bob = acme.create_account().await;
    let url = acme.resource("keyChange");
    // The inner JWS is signed by the new key: Bob's.
    let inner = sign_flattened(
        &bob.key,
        alg_for(&bob.key),
        json!({"url": url, "jwk": jwk_of(&bob.key)}),
        json!({"account": alice.url, "oldKey": jwk_of(&alice.key)})
            .to_string()
            .as_bytes(),
    );
    let reply = acme
        .post_kid(&alice, &url, Some(&serde_json::from_str(&inner).unwrap()))
        .await;
    reply.expect_problem(409, "malformed");
    assert_eq!(reply.location(), bob.url);
    // Alice keeps her key; Bob keeps his.
    acme.new_order(&alice, &["still-alice.test"]).await;
    acme.new_order(&bob, &["still-bob.test"]).await;
    let reply = acme
        .new_account_reply(&bob.key, &json!({"onlyReturnExisting": true}))
        .await;
    reply.expect_status(200);
    assert_eq!(reply.location(), bob.url);
    finish(kiln).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_change_with_a_wrong_old_key_or_account_is_unauthorized() {
    let (kiln, acme) = start().await;
    let alice = acme.create_account().await;
    let bob = acme.create_account().await;
    let url = acme.resource("keyChange");
    let new_key = generate_key(KeyKind::P384);
    for (account_url, old_key) in [
        (alice.url.clone(), jwk_of(&bob.key)),
        (bob.url.clone(), jwk_of(&alice.key)),
    ] {
        let inner = sign_flattened(
            &new_key,
            "ES384",
            json!({"url": url, "jwk": jwk_of(&new_key)}),
            json!({"account": account_url, "oldKey": old_key})
                .to_string()
                .as_bytes(),
        );
        acme.post_kid(&alice, &url, Some(&serde_json::from_str(&inner).unwrap()))
            .await
            .expect_problem(403, "unauthorized");
    }
    // The new key was not installed.
    acme.new_account_reply(&new_key, &json!({"onlyReturnExisting": true}))
        .await
        .expect_problem(400, "accountDoesNotExist");
    finish(kiln).await;
}
