//! Shared secrets and used nonces.

#[macro_use]
mod common;

use common::account;
use store::{Store, now_ms};

on_both_backends!(
    a_secret_is_created_once_then_shared,
    a_nonce_is_usable_once,
    a_nonce_is_redeemed_with_the_account_read,
);

async fn a_secret_is_created_once_then_shared(store: Store) {
    let s1 = store.secret("k", b"first").await.unwrap();
    assert_eq!(s1, b"first");
    assert_eq!(store.secret("k", b"second").await.unwrap(), b"first");
    assert_eq!(store.secret("other", b"second").await.unwrap(), b"second");
}

async fn a_nonce_is_usable_once(store: Store) {
    let far = now_ms() + 60_000;
    assert!(store.consume_nonce("n1", far).await.unwrap());
    assert!(!store.consume_nonce("n1", far).await.unwrap());
    assert!(store.consume_nonce("old", 1).await.unwrap());
    assert_eq!(store.prune_nonces(now_ms()).await.unwrap(), 1);
    // Only the expired one was forgotten.
    assert!(!store.consume_nonce("n1", far).await.unwrap());
    assert_eq!(store.prune_nonces(now_ms()).await.unwrap(), 0);
}

/// One round trip on PostgreSQL: the nonce is marked whether or not the
/// account exists, and a second use is a replay.
async fn a_nonce_is_redeemed_with_the_account_read(store: Store) {
    let stored = account("a1");
    store.insert_account(&stored).await.unwrap();
    let far = now_ms() + 60_000;
    let (fresh, found) = store
        .consume_nonce_reading_account("n1", far, "a1")
        .await
        .unwrap();
    assert!(fresh);
    assert_eq!(found, Some(stored.clone()));
    let (fresh, found) = store
        .consume_nonce_reading_account("n1", far, "a1")
        .await
        .unwrap();
    assert!(!fresh, "a replay");
    assert_eq!(found, Some(stored));
    let (fresh, found) = store
        .consume_nonce_reading_account("n2", far, "nobody")
        .await
        .unwrap();
    assert!(fresh);
    assert_eq!(found, None);
    assert!(
        !store.consume_nonce("n2", far).await.unwrap(),
        "n2 was marked"
    );
}
