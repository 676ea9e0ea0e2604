//! The 2026 DNS methods end to end with a real client (instant-acme, which
//! takes any challenge type by name): dns-account-01
//! (draft-ietf-acme-dns-account-label) and dns-persist-01
//! (draft-ietf-acme-dns-persist), each answered on the wire by the test's
//! own DNS server, and the records that must be refused.

use dns::testing::TestDnsServer;
use instant_acme::{Account, ChallengeType, Error, Order, OrderStatus, RetryPolicy};
use kiln_tests::instant::{account, new_order};
use kiln_tests::perspectives::refusal;
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

/// The all-in-one on the test's DNS server, and an account of it.
struct Ca {
    dns: TestDnsServer,
    kiln: TestKiln,
    account: Account,
}

impl Ca {
    async fn start() -> Ca {
        let dns = TestDnsServer::start().await;
        // dns-persist-01 is offered only when asked for.
        let every_type = |c: &mut kiln::EmbeddedConfig| {
            c.challenge_types = domain::ChallengeType::ALL.to_vec();
        };
        let kiln = TestKiln::start_with(Some(dns.addr()), every_type).await;
        let account = account(&kiln).await;
        Ca { dns, kiln, account }
    }

    async fn order(&self, names: &[&str]) -> Order {
        new_order(&self.account, names).await
    }

    /// dns-account-01 with the record under the label of the account URL
    /// that `labelled` makes of this one's.
    async fn account_label(
        &self,
        order: &mut Order,
        labelled: impl Fn(&str) -> String,
    ) -> Result<OrderStatus, Error> {
        answer(
            order,
            &self.dns,
            &self.account,
            "dns-account-01",
            |base, url, digest| {
                let name = validator::dns_account::record_name(&labelled(url), base);
                (name, digest.into())
            },
        )
        .await
    }

    /// dns-persist-01 with the record `value` makes of the account URL.
    async fn persist(
        &self,
        order: &mut Order,
        value: impl Fn(&str) -> String,
    ) -> Result<OrderStatus, Error> {
        answer(
            order,
            &self.dns,
            &self.account,
            "dns-persist-01",
            |base, url, _| (format!("_validation-persist.{base}"), value(url)),
        )
        .await
    }
}

const UNAUTHORIZED: Option<&str> = Some("urn:ietf:params:acme:error:unauthorized");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_account01_issues_for_a_name_and_its_wildcard() {
    let ca = Ca::start().await;
    let names = ["*.label.test", "label.test"];
    let mut order = ca.order(&names).await;
    let ready = ca.account_label(&mut order, str::to_string).await;
    assert_eq!(ready.expect("ready"), OrderStatus::Ready);
    assert_eq!(issue(&mut order, &names).await, sorted(&names));
    ca.kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_account01_under_another_accounts_label_is_refused() {
    let ca = Ca::start().await;
    let mut order = ca.order(&["other-label.test"]).await;
    let result = ca
        .account_label(&mut order, |url| format!("{url}-not-mine"))
        .await;
    let detail = refusal(result).detail.unwrap_or_default();
    // The draft: the problem names the account URL the name was built from.
    assert!(detail.contains(ca.account.id()), "{detail}");
    ca.kiln.kiln.shutdown().await;
}

/// `kiln.test` is the all-in-one's issuer domain name (`caaIdentities`).
fn persist_record(account_url: &str, extra: &str) -> String {
    format!("kiln.test; accounturi={account_url}{extra}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_persist01_issues_from_a_standing_record() {
    let ca = Ca::start().await;
    let names = ["persist.test"];
    let mut order = ca.order(&names).await;
    let with_unknown_tag = |url: &str| persist_record(url, "; unknown-tag=ignored");
    let ready = ca.persist(&mut order, with_unknown_tag).await;
    assert_eq!(ready.expect("ready"), OrderStatus::Ready);
    assert_eq!(issue(&mut order, &names).await, sorted(&names));

    // The record stands; a second order is validated from it again (a
    // dns-persist-01 authorization is never reused).
    let mut again = ca.order(&names).await;
    assert_eq!(again.state().status, OrderStatus::Pending, "not reused");
    let ready = ca.persist(&mut again, |url| persist_record(url, "")).await;
    assert_eq!(ready.expect("ready again"), OrderStatus::Ready);
    ca.kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_persist01_wildcards_need_policy_wildcard() {
    let ca = Ca::start().await;
    let mut refused = ca.order(&["*.nowild.test"]).await;
    let result = ca
        .persist(&mut refused, |url| persist_record(url, ""))
        .await;
    assert_eq!(refusal(result).r#type.as_deref(), UNAUTHORIZED);

    let names = ["*.wild.test"];
    let mut order = ca.order(&names).await;
    let wildcard = |url: &str| persist_record(url, "; policy=wildcard");
    assert_eq!(
        ca.persist(&mut order, wildcard).await.expect("ready"),
        OrderStatus::Ready
    );
    assert_eq!(issue(&mut order, &names).await, sorted(&names));
    ca.kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_persist01_records_for_another_account_or_ca_are_refused() {
    let ca = Ca::start().await;
    let mut order = ca.order(&["someone-else.test"]).await;
    let another_account = |url: &str| persist_record(&format!("{url}0"), "");
    let result = ca.persist(&mut order, another_account).await;
    assert_eq!(refusal(result).r#type.as_deref(), UNAUTHORIZED);

    let mut order = ca.order(&["other-ca.test"]).await;
    let another_ca = |url: &str| format!("other-ca.example; accounturi={url}");
    let problem = refusal(ca.persist(&mut order, another_ca).await);
    assert_eq!(problem.r#type.as_deref(), UNAUTHORIZED);
    let detail = problem.detail.unwrap_or_default();
    assert!(
        detail.contains("kiln.test"),
        "names our issuer domain: {detail}"
    );
    ca.kiln.kiln.shutdown().await;
}

/// The all-in-one offers dns-persist-01 only when asked: its challenge has
/// no token, and a client that requires one (uacme 1.7) fails every order
/// whose authorizations hold it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_persist01_is_offered_only_when_asked_for() {
    let offered = async |kiln: &TestKiln| {
        let acme = kiln_tests::acme::Acme::connect(kiln).await;
        let account = acme.create_account().await;
        let payload = serde_json::json!({"identifiers": [{"type": "dns", "value": "offer.test"}]});
        let reply = acme.new_order_reply(&account, &payload).await;
        reply.expect_status(201);
        let authz_url = reply.body["authorizations"][0]
            .as_str()
            .unwrap()
            .to_string();
        let authz = acme.post_as_get(&account, &authz_url).await.body;
        let mut types: Vec<String> = authz["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap().to_string())
            .collect();
        types.sort();
        types
    };
    let default = TestKiln::start(None).await;
    assert_eq!(
        offered(&default).await,
        ["dns-01", "dns-account-01", "http-01", "tls-alpn-01"]
    );
    let every_type = |c: &mut kiln::EmbeddedConfig| {
        c.challenge_types = domain::ChallengeType::ALL.to_vec();
    };
    let asked = TestKiln::start_with(None, every_type).await;
    assert!(
        offered(&asked)
            .await
            .contains(&"dns-persist-01".to_string())
    );
}
