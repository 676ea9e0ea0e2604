//! Deactivating an account cancels its pending work (RFC 8555 §7.3.6) in
//! the same transaction: pending authorizations → deactivated, pending and
//! ready orders → invalid; what is finalizing or finished stays.

#[macro_use]
mod common;

use common::{ACCOUNT, account, make_ready, order, pending_order, processing_order};
use domain::{AccountStatus, AuthzStatus, OrderStatus, ProblemKind};
use store::{Store, now_ms};

on_both_backends!(
    deactivation_cancels_pending_orders_and_authorizations,
    deactivation_leaves_other_accounts_alone,
    a_second_deactivation_changes_nothing,
);

async fn order_status(store: &Store, id: &str) -> OrderStatus {
    store.order(id).await.unwrap().unwrap().status
}

async fn authz_statuses(store: &Store, order_id: &str) -> Vec<AuthzStatus> {
    let authzs = store.authzs_for_order(order_id).await.unwrap();
    authzs.iter().map(|a| a.status).collect()
}

async fn deactivation_cancels_pending_orders_and_authorizations(store: Store) {
    let now = now_ms();
    // pending: two pending authorizations.
    pending_order(&store, "pending", &["p1.kiln.test", "p2.kiln.test"]).await;
    // ready: every authorization valid.
    pending_order(&store, "ready", &["r.kiln.test"]).await;
    make_ready(&store, "ready", 1).await;
    // half-validated: one valid, one pending.
    pending_order(&store, "half", &["h1.kiln.test", "h2.kiln.test"]).await;
    make_ready(&store, "half", 1).await;
    // finalizing: stays processing, its certificate is being made.
    processing_order(&store, "finalizing", now, now + 60_000).await;

    assert!(store.deactivate_account(ACCOUNT).await.unwrap());
    let account = store.account(ACCOUNT).await.unwrap().unwrap();
    assert_eq!(account.status, AccountStatus::Deactivated);

    for id in ["pending", "ready", "half"] {
        let order = store.order(id).await.unwrap().unwrap();
        assert_eq!(order.status, OrderStatus::Invalid, "order {id}");
        let error = order.error.expect("a cancelled order says why");
        assert_eq!(error.kind, ProblemKind::Unauthorized, "order {id}");
        assert!(error.detail.contains("deactivated"), "{}", error.detail);
    }
    assert_eq!(
        authz_statuses(&store, "pending").await,
        [AuthzStatus::Deactivated, AuthzStatus::Deactivated]
    );
    assert_eq!(
        authz_statuses(&store, "ready").await,
        [AuthzStatus::Valid],
        "a valid authorization stays valid (its order is invalid)"
    );
    assert_eq!(
        authz_statuses(&store, "half").await,
        [AuthzStatus::Valid, AuthzStatus::Deactivated]
    );
    assert_eq!(
        order_status(&store, "finalizing").await,
        OrderStatus::Processing
    );
    assert_eq!(
        store.order("finalizing").await.unwrap().unwrap().error,
        None
    );
}

async fn deactivation_leaves_other_accounts_alone(store: Store) {
    pending_order(&store, "mine", &["mine.kiln.test"]).await;
    store.insert_account(&account("other")).await.unwrap();
    let (theirs, authzs) = order("theirs", "other", &["theirs.kiln.test"]);
    store.insert_order(&theirs, &authzs).await.unwrap();

    assert!(store.deactivate_account(ACCOUNT).await.unwrap());
    assert_eq!(order_status(&store, "mine").await, OrderStatus::Invalid);
    assert_eq!(order_status(&store, "theirs").await, OrderStatus::Pending);
    assert_eq!(
        authz_statuses(&store, "theirs").await,
        [AuthzStatus::Pending]
    );
    let other = store.account("other").await.unwrap().unwrap();
    assert_eq!(other.status, AccountStatus::Valid);
}

async fn a_second_deactivation_changes_nothing(store: Store) {
    pending_order(&store, "o1", &["o1.kiln.test"]).await;
    assert!(store.deactivate_account(ACCOUNT).await.unwrap());
    let before = store.order("o1").await.unwrap().unwrap();
    assert!(!store.deactivate_account(ACCOUNT).await.unwrap());
    assert_eq!(store.order("o1").await.unwrap().unwrap(), before);
    // An account that never existed: refused, nothing written.
    assert!(!store.deactivate_account("nobody").await.unwrap());
}
