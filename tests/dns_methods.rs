//! The 2026 DNS methods end to end with a real client (instant-acme, which
//! takes any challenge type by name): dns-account-01
//! (draft-ietf-acme-dns-account-label) and dns-persist-01
//! (draft-ietf-acme-dns-persist), each answered on the wire by the test's
//! own DNS server, and the records that must be refused.

use dns::testing::TestDnsServer;
use instant_acme::{Account, ChallengeType, Error, Order, OrderStatus, RetryPolicy};
use kiln_tests::instant::{account, new_order};
use kiln_tests::{TestKiln, csr_der, parse_chain, san_names};
use std::time::Duration;

fn retry(secs: u64) -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(50))
        .timeout(Duration::from_secs(secs))
}

/// For every authorization: publishes what `record` says (TXT name and
/// value, from the base name, the account URL and the dns-01 digest) and
/// declares the `kind` challenge ready. Then polls the order.
async fn answer(
    order: &mut Order,
    dns: &TestDnsServer,
    account: &Account,
    kind: &str,
    record: impl Fn(&str, &str, &str) -> (String, String),
) -> Result<OrderStatus, Error> {
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz.expect("authorization");
        let mut challenge = authz
            .challenge(ChallengeType::Unknown(kind.into()))
            .unwrap_or_else(|| panic!("{kind} offered"));
        let base = challenge
            .identifier()
            .to_string()
            .trim_start_matches("*.")
            .to_string();
        let digest = challenge.key_authorization().dns_value();
        let (name, value) = record(&base, account.id(), &digest);
        dns.set_txt(&name, &value).await;
        challenge.set_ready().await.expect("challenge accepted");
    }
    order.poll_ready(&retry(30)).await
}

/// Finalizes and returns the leaf's SANs.
async fn issue(order: &mut Order, names: &[&str]) -> Vec<String> {
    order.finalize_csr(&csr_der(names)).await.expect("finalize");
    let pem = order.poll_certificate(&retry(60)).await.expect("issued");
    san_names(&parse_chain(&pem)[0])
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    v.sort();
    v
}

/// The problem that made the order invalid.
fn refusal(result: Result<OrderStatus, Error>) -> instant_acme::Problem {
    match result {
        Err(Error::Api(problem)) => problem,
        other => panic!("expected the order to fail, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_account01_issues_for_a_name_and_its_wildcard() {
    let dns = TestDnsServer::start().await;
    let kiln = TestKiln::start(Some(dns.addr())).await;
    let account = account(&kiln).await;
    let names = ["*.label.test", "label.test"];
    let mut order = new_order(&account, &names).await;
    let ready = answer(
        &mut order,
        &dns,
        &account,
        "dns-account-01",
        |base, url, digest| {
            (
                validator::dns_account::record_name(url, base),
                digest.into(),
            )
        },
    )
    .await;
    assert_eq!(ready.expect("ready"), OrderStatus::Ready);
    assert_eq!(issue(&mut order, &names).await, sorted(&names));
    kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_account01_under_another_accounts_label_is_refused() {
    let dns = TestDnsServer::start().await;
    let kiln = TestKiln::start(Some(dns.addr())).await;
    let account = account(&kiln).await;
    let mut order = new_order(&account, &["other-label.test"]).await;
    let result = answer(
        &mut order,
        &dns,
        &account,
        "dns-account-01",
        |base, url, digest| {
            let other = format!("{url}-not-mine");
            (
                validator::dns_account::record_name(&other, base),
                digest.into(),
            )
        },
    )
    .await;
    let problem = refusal(result);
    let detail = problem.detail.unwrap_or_default();
    // The draft: the problem names the account URL the name was built from.
    assert!(detail.contains(account.id()), "{detail}");
    kiln.kiln.shutdown().await;
}

/// `kiln.test` is the all-in-one's issuer domain name (`caaIdentities`).
fn persist_record(account_url: &str, extra: &str) -> String {
    format!("kiln.test; accounturi={account_url}{extra}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_persist01_issues_from_a_standing_record() {
    let dns = TestDnsServer::start().await;
    let kiln = TestKiln::start(Some(dns.addr())).await;
    let account = account(&kiln).await;
    let names = ["persist.test"];
    let mut order = new_order(&account, &names).await;
    let ready = answer(
        &mut order,
        &dns,
        &account,
        "dns-persist-01",
        |base, url, _| {
            (
                format!("_validation-persist.{base}"),
                persist_record(url, "; unknown-tag=ignored"),
            )
        },
    )
    .await;
    assert_eq!(ready.expect("ready"), OrderStatus::Ready);
    assert_eq!(issue(&mut order, &names).await, sorted(&names));

    // The record stands; a second order is validated from it again (a
    // dns-persist-01 authorization is never reused).
    let mut again = new_order(&account, &names).await;
    assert_eq!(again.state().status, OrderStatus::Pending, "not reused");
    let ready = answer(
        &mut again,
        &dns,
        &account,
        "dns-persist-01",
        |base, url, _| {
            (
                format!("_validation-persist.{base}"),
                persist_record(url, ""),
            )
        },
    )
    .await;
    assert_eq!(ready.expect("ready again"), OrderStatus::Ready);
    kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_persist01_wildcards_need_policy_wildcard() {
    let dns = TestDnsServer::start().await;
    let kiln = TestKiln::start(Some(dns.addr())).await;
    let account = account(&kiln).await;

    let mut refused = new_order(&account, &["*.nowild.test"]).await;
    let result = answer(
        &mut refused,
        &dns,
        &account,
        "dns-persist-01",
        |base, url, _| {
            (
                format!("_validation-persist.{base}"),
                persist_record(url, ""),
            )
        },
    )
    .await;
    let problem = refusal(result);
    assert_eq!(
        problem.r#type.as_deref(),
        Some("urn:ietf:params:acme:error:unauthorized")
    );

    let names = ["*.wild.test"];
    let mut order = new_order(&account, &names).await;
    let ready = answer(
        &mut order,
        &dns,
        &account,
        "dns-persist-01",
        |base, url, _| {
            (
                format!("_validation-persist.{base}"),
                persist_record(url, "; policy=wildcard"),
            )
        },
    )
    .await;
    assert_eq!(ready.expect("ready"), OrderStatus::Ready);
    assert_eq!(issue(&mut order, &names).await, sorted(&names));
    kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_persist01_records_for_another_account_or_ca_are_refused() {
    let dns = TestDnsServer::start().await;
    let kiln = TestKiln::start(Some(dns.addr())).await;
    let account = account(&kiln).await;

    let mut order = new_order(&account, &["someone-else.test"]).await;
    let result = answer(
        &mut order,
        &dns,
        &account,
        "dns-persist-01",
        |base, url, _| {
            (
                format!("_validation-persist.{base}"),
                persist_record(&format!("{url}0"), ""),
            )
        },
    )
    .await;
    let problem = refusal(result);
    assert_eq!(
        problem.r#type.as_deref(),
        Some("urn:ietf:params:acme:error:unauthorized")
    );

    let mut order = new_order(&account, &["other-ca.test"]).await;
    let result = answer(
        &mut order,
        &dns,
        &account,
        "dns-persist-01",
        |base, url, _| {
            (
                format!("_validation-persist.{base}"),
                format!("other-ca.example; accounturi={url}"),
            )
        },
    )
    .await;
    let problem = refusal(result);
    assert_eq!(
        problem.r#type.as_deref(),
        Some("urn:ietf:params:acme:error:unauthorized")
    );
    let detail = problem.detail.unwrap_or_default();
    assert!(
        detail.contains("kiln.test"),
        "names our issuer domain: {detail}"
    );
    kiln.kiln.shutdown().await;
}
