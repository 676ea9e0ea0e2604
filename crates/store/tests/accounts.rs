//! Accounts: one per key; changes only while `valid`.

#[macro_use]
mod common;

use common::account;
use store::{Store, StoreError};

on_both_backends!(
    one_key_is_one_account,
    a_key_changes_by_compare_and_set,
    contact_is_updated,
    deactivation_happens_once_and_freezes_the_account,
);

async fn one_key_is_one_account(store: Store) {
    let (a, created) = store.insert_account(&account("acct1")).await.unwrap();
    assert!(created);
    assert_eq!(a, account_as_stored(&store, "acct1").await);
    let mut dup = account("acct1-again");
    dup.key_thumbprint = a.key_thumbprint.clone();
    let (same, created) = store.insert_account(&dup).await.unwrap();
    assert!(!created);
    assert_eq!(same.id, "acct1");
    assert_eq!(
        store
            .account_by_thumbprint("thumb-acct1")
            .await
            .unwrap()
            .map(|a| a.id),
        Some("acct1".to_string())
    );
    assert_eq!(store.account_by_thumbprint("nobody").await.unwrap(), None);
    assert_eq!(store.account("acct1-again").await.unwrap(), None);
}

async fn account_as_stored(store: &Store, id: &str) -> store::Account {
    store.account(id).await.unwrap().unwrap()
}

async fn a_key_changes_by_compare_and_set(store: Store) {
    store.insert_account(&account("acct1")).await.unwrap();
    store.insert_account(&account("acct2")).await.unwrap();
    assert!(matches!(
        store.change_account_key("acct1", "thumb-acct1", "thumb-acct2", "{}").await,
        Err(StoreError::Conflict(other)) if other == "acct2"
    ));
    assert!(
        !store
            .change_account_key("acct1", "wrong-old", "thumb-new", "{}")
            .await
            .unwrap()
    );
    assert!(
        store
            .change_account_key("acct1", "thumb-acct1", "thumb-new", "{}")
            .await
            .unwrap()
    );
    let moved = store.account_by_thumbprint("thumb-new").await.unwrap();
    assert_eq!(moved.map(|a| a.id), Some("acct1".to_string()));
    assert_eq!(
        store.account_by_thumbprint("thumb-acct1").await.unwrap(),
        None
    );
}

async fn contact_is_updated(store: Store) {
    store.insert_account(&account("acct1")).await.unwrap();
    assert!(
        store
            .update_account_contact("acct1", &["mailto:b@kiln.test".into()])
            .await
            .unwrap()
    );
    assert_eq!(
        store.account("acct1").await.unwrap().unwrap().contact,
        vec!["mailto:b@kiln.test"]
    );
}

async fn deactivation_happens_once_and_freezes_the_account(store: Store) {
    store.insert_account(&account("acct2")).await.unwrap();
    assert!(store.deactivate_account("acct2").await.unwrap());
    assert!(!store.deactivate_account("acct2").await.unwrap());
    let frozen = store.account("acct2").await.unwrap().unwrap();
    assert_eq!(frozen.status, domain::AccountStatus::Deactivated);
    assert!(
        !store
            .update_account_contact("acct2", &["mailto:c@kiln.test".into()])
            .await
            .unwrap(),
        "a deactivated account keeps its contact"
    );
    assert!(
        !store
            .change_account_key("acct2", "thumb-acct2", "thumb-other", "{}")
            .await
            .unwrap(),
        "and its key"
    );
    assert_eq!(store.account("acct2").await.unwrap().unwrap(), frozen);
}
