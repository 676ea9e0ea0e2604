//! Rate limits through the HTTP API of an in-process Kiln given limits
//! (`EmbeddedConfig::rate_limits`, the all-in-one's `--rate-limits FILE`):
//! each answered 429 `rateLimited` with `Retry-After` and a `Link` to
//! `/docs/rate-limits`, counted per its bucket only. That the counts hold
//! across api replicas is `tests/distributed.rs`'s to show.

use api::rate_limits::RateLimits;
use kiln_tests::acme::{Acme, Reply, p256, thumbprint};
use kiln_tests::{TestKiln, csr_der};
use serde_json::json;
use std::time::{Duration, Instant};

async fn start(limits: RateLimits) -> (TestKiln, Acme) {
    let kiln = TestKiln::start_with(None, |c| c.rate_limits = limits).await;
    let acme = Acme::connect(&kiln).await;
    (kiln, acme)
}

/// A `rateLimited` refusal: 429, a `Retry-After` of 1 s up to `window`, and
/// the help link; its detail.
fn expect_limited(reply: &Reply, window: Duration) -> String {
    let detail = reply.expect_problem(429, "rateLimited");
    let retry: u64 = reply
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!(
        (1..=window.as_secs()).contains(&retry),
        "Retry-After {retry} s"
    );
    let links: Vec<&str> = reply
        .headers
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        links
            .iter()
            .any(|l| l.contains("/docs/rate-limits>") && l.contains("rel=\"help\"")),
        "help link in {links:?}"
    );
    detail
}

const THREE_HOURS: Duration = Duration::from_secs(3 * 3600);
const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

#[tokio::test]
async fn new_orders_per_account_are_limited_per_account() {
    let (kiln, acme) = start(RateLimits {
        new_orders_per_account_per_3h: 2,
        ..Default::default()
    })
    .await;
    let busy = acme.create_account().await;
    acme.new_order(&busy, &["one.example.test"]).await;
    acme.new_order(&busy, &["two.example.test"]).await;
    let identifiers = json!({"identifiers": [{"type": "dns", "value": "three.example.test"}]});
    let refused = acme.new_order_reply(&busy, &identifiers).await;
    let detail = expect_limited(&refused, THREE_HOURS);
    assert!(detail.contains("new orders for this account"), "{detail}");
    let other = acme.create_account().await;
    acme.new_order(&other, &["three.example.test"]).await;
    let page = acme
        .http
        .get(acme.url("/docs/rate-limits"))
        .send()
        .await
        .unwrap();
    assert!(page.status().is_success());
    let page = page.text().await.unwrap();
    assert!(
        page.contains("new orders per account: 2 per 3 hours"),
        "{page}"
    );
    assert!(
        page.contains("pending authorizations per account: 0"),
        "{page}"
    );
    kiln.kiln.shutdown().await;
}

#[tokio::test]
async fn new_accounts_per_address_count_only_accounts_created() {
    let (kiln, acme) = start(RateLimits {
        new_accounts_per_ip_per_3h: 2,
        ..Default::default()
    })
    .await;
    let first = acme.create_account().await;
    acme.create_account().await;
    // Looking up an existing account creates nothing and is not limited.
    let again = acme
        .new_account_reply(&first.key, &json!({"termsOfServiceAgreed": true}))
        .await;
    again.expect_status(200);
    let refused = acme
        .new_account_reply(&p256(), &json!({"termsOfServiceAgreed": true}))
        .await;
    let detail = expect_limited(&refused, THREE_HOURS);
    assert!(
        detail.contains("new accounts from this address"),
        "{detail}"
    );
    kiln.kiln.shutdown().await;
}

#[tokio::test]
async fn pending_authorizations_are_limited_per_account() {
    let (kiln, acme) = start(RateLimits {
        pending_authorizations_per_account: 3,
        ..Default::default()
    })
    .await;
    let account = acme.create_account().await;
    acme.new_order(&account, &["a.example.test", "b.example.test"])
        .await;
    let two_more = json!({"identifiers": [
        {"type": "dns", "value": "c.example.test"},
        {"type": "dns", "value": "d.example.test"},
    ]});
    let refused = acme.new_order_reply(&account, &two_more).await;
    let detail = refused.expect_problem(429, "rateLimited");
    assert!(detail.contains("pending authorizations"), "{detail}");
    // One more fits.
    acme.new_order(&account, &["c.example.test"]).await;
    kiln.kiln.shutdown().await;
}

#[tokio::test]
async fn failed_validations_are_limited_per_account_and_name() {
    let (kiln, acme) = start(RateLimits {
        failed_validations_per_account_hostname_per_hour: 1,
        ..Default::default()
    })
    .await;
    let account = acme.create_account().await;
    let order = acme.new_order(&account, &["fails.example.test"]).await;
    let authz_url = order.authorizations()[0].clone();
    let (challenge_url, token) = acme.http01_challenge(&account, &authz_url).await;
    // The responder answers, but with the wrong key authorization.
    kiln.http01
        .set(&token, &format!("{token}.not-{}", thumbprint(&account.key)));
    acme.post_kid(&account, &challenge_url, Some(&json!({})))
        .await
        .expect_status(200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while acme.read_order(&account, &order.url).await.status() != "invalid" {
        assert!(Instant::now() < deadline, "the challenge never failed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let same_name = json!({"identifiers": [{"type": "dns", "value": "fails.example.test"}]});
    let refused = acme.new_order_reply(&account, &same_name).await;
    let detail = expect_limited(&refused, Duration::from_secs(3600));
    assert!(detail.contains("failed validations"), "{detail}");
    let wildcard = json!({"identifiers": [{"type": "dns", "value": "*.fails.example.test"}]});
    let refused = acme.new_order_reply(&account, &wildcard).await;
    refused.expect_problem(429, "rateLimited");
    acme.new_order(&account, &["other.example.test"]).await;
    let someone_else = acme.create_account().await;
    acme.new_order(&someone_else, &["fails.example.test"]).await;
    kiln.kiln.shutdown().await;
}

#[tokio::test]
async fn certificates_are_limited_per_registered_domain_and_per_name_set() {
    let (kiln, acme) = start(RateLimits {
        certificates_per_registered_domain_per_week: 2,
        duplicate_certificates_per_week: 1,
        ..Default::default()
    })
    .await;
    let account = acme.create_account().await;
    acme.issue(&kiln, &account, &["a.example.test"]).await;
    // The same name again: a duplicate, refused at new-order.
    let same = json!({"identifiers": [{"type": "dns", "value": "a.example.test"}]});
    let detail = expect_limited(&acme.new_order_reply(&account, &same).await, WEEK);
    assert!(detail.contains("exactly this set of names"), "{detail}");
    // Another name of the same registered domain fits once more; an order
    // placed before the limit was reached is refused at finalize.
    let early = acme.ready_order(&kiln, &account, &["c.example.test"]).await;
    acme.issue(&kiln, &account, &["b.example.test"]).await;
    let late = acme
        .finalize(&account, &early, &csr_der(&["c.example.test"]))
        .await;
    let detail = expect_limited(&late, WEEK);
    assert!(detail.contains("registered domain"), "{detail}");
    assert_eq!(
        acme.read_order(&account, &early.url).await.status(),
        "ready"
    );
    // Another registered domain is counted apart.
    acme.issue(&kiln, &account, &["a.other.test"]).await;
    kiln.kiln.shutdown().await;
}
