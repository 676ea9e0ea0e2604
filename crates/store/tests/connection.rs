//! Connecting, migrating, probing and closing a store.

#[macro_use]
mod common;

use store::{Backend, Store};

on_both_backends!(url: a_store_migrates_idempotently_and_answers_until_closed);

async fn a_store_migrates_idempotently_and_answers_until_closed(store: Store, url: String) {
    store.migrate().await.unwrap(); // idempotent
    let expected = if url.starts_with("sqlite:") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    };
    assert_eq!(store.backend(), expected);
    assert!(store.ping().await);
    // A second handle on the same database, with a bounded pool.
    let small = Store::connect_with(&url, 1).await.unwrap();
    small.migrate().await.unwrap();
    assert!(small.ping().await);
    small.close().await;
    assert!(!small.ping().await, "closed");
    assert!(store.ping().await, "a pool of its own");
}
