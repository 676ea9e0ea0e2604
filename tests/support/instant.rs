//! instant-acme, a real Rust ACME client, set up against a Kiln.

use crate::{Http01Responder, TestKiln};
use dns::testing::TestDnsServer;
use instant_acme::{
    Account, ChallengeType, Identifier, NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use std::path::Path;
use std::time::Duration;

/// A new account that trusts the Kiln's root.
pub async fn account(kiln: &TestKiln) -> Account {
    new_account(&kiln.kiln.root_pem_path, &kiln.directory_url(), &[]).await
}

/// A new account with `contact` at `directory_url`, trusting the root in
/// `root_pem_path` (any Kiln: in-process, embedded binary or distributed).
pub async fn new_account(root_pem_path: &Path, directory_url: &str, contact: &[&str]) -> Account {
    Account::builder_with_root(root_pem_path)
        .expect("instant-acme builder")
        .create(
            &NewAccount {
                contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory_url.to_string(),
            None,
        )
        .await
        .expect("account created")
        .0
}

/// A new order for `names` (DNS identifiers).
pub async fn new_order(account: &Account, names: &[&str]) -> Order {
    let ids: Vec<Identifier> = names
        .iter()
        .map(|n| Identifier::Dns(n.to_string()))
        .collect();
    account
        .new_order(&NewOrder::new(&ids))
        .await
        .expect("order created")
}

/// Serves every authorization's http-01 answer from `http01` and declares
/// its challenge ready.
pub async fn answer_http01(order: &mut Order, http01: &Http01Responder) {
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz.expect("authorization");
        let mut challenge = authz
            .challenge(ChallengeType::Http01)
            .expect("http-01 offered");
        http01.set(&challenge.token, challenge.key_authorization().as_str());
        challenge.set_ready().await.expect("challenge accepted");
    }
}

/// Publishes the dns-01 TXT record of every authorization in `dns` and
/// declares its challenge ready.
pub async fn answer_dns01(order: &mut Order, dns: &TestDnsServer) {
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz.expect("authorization");
        let mut challenge = authz
            .challenge(ChallengeType::Dns01)
            .expect("dns-01 offered");
        let base = challenge
            .identifier()
            .to_string()
            .trim_start_matches("*.")
            .to_string();
        let value = challenge.key_authorization().dns_value();
        dns.set_txt(&format!("_acme-challenge.{base}"), &value)
            .await;
        challenge.set_ready().await.expect("challenge accepted");
    }
}

/// An order for `name`, made `ready` through http-01 with the Kiln's
/// responder.
pub async fn ready_order(kiln: &TestKiln, account: &Account, name: &str) -> Order {
    let mut order = new_order(account, &[name]).await;
    answer_http01(&mut order, &kiln.http01).await;
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(20))
        .timeout(Duration::from_secs(20));
    assert_eq!(
        order.poll_ready(&retry).await.expect("order ready"),
        OrderStatus::Ready
    );
    order
}
