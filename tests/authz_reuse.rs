//! Authorization reuse (RFC 8555 §7.1.4): a new order of the same account
//! for a name it holds a valid authorization for gets that validation again
//! (a new authorization, already valid, with the challenge that validated
//! it), so the order is `ready` at once; another account, or reuse turned
//! off, gets a pending authorization to validate.

use kiln_tests::TestKiln;
use kiln_tests::acme::Acme;
use serde_json::json;
use std::time::Duration;

async fn order_reply(
    acme: &Acme,
    account: &kiln_tests::acme::Account,
    name: &str,
) -> serde_json::Value {
    let payload = json!({"identifiers": [{"type": "dns", "value": name}]});
    let reply = acme.new_order_reply(account, &payload).await;
    reply.expect_status(201);
    reply.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_authorization_is_reused_by_its_account_only() {
    let kiln = TestKiln::start(None).await;
    let acme = Acme::connect(&kiln).await;
    let account = acme.create_account().await;
    let first = acme.ready_order(&kiln, &account, &["reuse.test"]).await;
    let first_authz_url = &first.authorizations()[0];
    let first_authz = acme.post_as_get(&account, first_authz_url).await.body;

    let payload = json!({"identifiers": [{"type": "dns", "value": "reuse.test"}]});
    let reply = acme.new_order_reply(&account, &payload).await;
    reply.expect_status(201);
    let (second_url, second) = (reply.location(), reply.body);
    assert_eq!(second["status"], "ready", "no validation needed: {second}");
    let second_authz_url = second["authorizations"][0].as_str().unwrap();
    assert_ne!(
        second_authz_url, first_authz_url,
        "an authorization of its own"
    );
    let second_authz = acme.post_as_get(&account, second_authz_url).await.body;
    assert_eq!(second_authz["status"], "valid");
    assert_eq!(
        second_authz["expires"], first_authz["expires"],
        "it expires when the validation does"
    );
    let challenges = second_authz["challenges"].as_array().unwrap();
    assert_eq!(
        challenges.len(),
        1,
        "the challenge that validated it: {second_authz}"
    );
    assert_eq!(challenges[0]["status"], "valid");
    assert_eq!(challenges[0]["type"], "http-01");
    assert_eq!(
        challenges[0]["validated"],
        first_authz["challenges"][0]["validated"]
    );

    // The reused order finalizes like any ready one.
    let reused = kiln_tests::acme::Order {
        url: second_url.clone(),
        body: second.clone(),
    };
    acme.finalize(&account, &reused, &kiln_tests::csr_der(&["reuse.test"]))
        .await
        .expect_status(200);
    acme.poll_order(&account, &second_url, "valid").await;

    // Another account validates for itself; so does a wildcard order.
    let other = acme.create_account().await;
    assert_eq!(
        order_reply(&acme, &other, "reuse.test").await["status"],
        "pending"
    );
    assert_eq!(
        order_reply(&acme, &account, "*.reuse.test").await["status"],
        "pending"
    );
    kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_reuse_off_every_order_validates() {
    let kiln = TestKiln::start_with(None, |config| config.authz_reuse = Duration::ZERO).await;
    let acme = Acme::connect(&kiln).await;
    let account = acme.create_account().await;
    acme.ready_order(&kiln, &account, &["again.test"]).await;
    assert_eq!(
        order_reply(&acme, &account, "again.test").await["status"],
        "pending"
    );
    kiln.kiln.shutdown().await;
}
