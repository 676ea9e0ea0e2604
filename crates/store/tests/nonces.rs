//! Shared secrets and used nonces.

#[macro_use]
mod common;

use store::{Store, now_ms};

on_both_backends!(a_secret_is_created_once_then_shared, a_nonce_is_usable_once,);

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
