//! instant-acme, a real Rust ACME client, set up against a `TestKiln`.

use crate::TestKiln;
use instant_acme::{
    Account, ChallengeType, Identifier, NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use std::time::Duration;

/// A new account that trusts the Kiln's root.
pub async fn account(kiln: &TestKiln) -> Account {
    Account::builder_with_root(&kiln.kiln.root_pem_path)
        .expect("instant-acme builder")
        .create(
            &NewAccount {
                contact: &[],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            kiln.directory_url(),
            None,
        )
        .await
        .expect("account created")
        .0
}

/// An order for `name`, made `ready` through http-01 with the Kiln's
/// responder.
pub async fn ready_order(kiln: &TestKiln, account: &Account, name: &str) -> Order {
    let ids = [Identifier::Dns(name.into())];
    let mut order = account
        .new_order(&NewOrder::new(&ids))
        .await
        .expect("order");
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz.expect("authorization");
        let mut challenge = authz
            .challenge(ChallengeType::Http01)
            .expect("http-01 offered");
        kiln.http01
            .set(&challenge.token, challenge.key_authorization().as_str());
        challenge.set_ready().await.expect("challenge accepted");
    }
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(20))
        .timeout(Duration::from_secs(20));
    assert_eq!(
        order.poll_ready(&retry).await.expect("order ready"),
        OrderStatus::Ready
    );
    order
}
