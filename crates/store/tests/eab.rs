//! External Account Binding keys: created, listed, revoked, and bound to
//! exactly one account in the account's own insert.

#[macro_use]
mod common;

use common::account;
use store::{EabBinding, EabKey, Store, now_ms};

on_both_backends!(
    a_key_is_created_once_and_listed,
    a_key_binds_the_new_account_in_its_insert,
    a_bound_key_binds_no_second_account,
    a_revoked_key_binds_nothing,
    an_existing_account_key_leaves_the_eab_key_free,
    of_racing_new_accounts_one_key_binds_one,
);

fn key(id: &str) -> EabKey {
    EabKey::new(id.into(), vec![7; 32], format!("for {id}"), now_ms())
}

async fn a_key_is_created_once_and_listed(store: Store) {
    assert!(store.create_eab_key(&key("k1")).await.unwrap());
    let mut again = key("k1");
    again.hmac_key = vec![9; 32];
    assert!(!store.create_eab_key(&again).await.unwrap());
    let stored = store.eab_key("k1").await.unwrap().unwrap();
    assert_eq!(stored.hmac_key, vec![7; 32], "the first key stays");
    assert!(stored.is_usable());
    assert!(store.create_eab_key(&key("k2")).await.unwrap());
    let ids: Vec<_> = store.eab_keys().await.unwrap();
    let ids: Vec<_> = ids.iter().map(|k| k.key_id.as_str()).collect();
    assert_eq!(ids, ["k1", "k2"]);
    assert_eq!(store.eab_key("nope").await.unwrap(), None);
}

async fn a_key_binds_the_new_account_in_its_insert(store: Store) {
    store.create_eab_key(&key("k1")).await.unwrap();
    let outcome = store
        .insert_account_with_eab(&account("a1"), "k1", 42)
        .await
        .unwrap();
    assert!(matches!(outcome, EabBinding::Created(ref a) if a.id == "a1"));
    let stored = store.eab_key("k1").await.unwrap().unwrap();
    assert_eq!(stored.account_id.as_deref(), Some("a1"));
    assert_eq!(stored.bound_at, Some(42));
    assert!(!stored.is_usable());
}

async fn a_bound_key_binds_no_second_account(store: Store) {
    store.create_eab_key(&key("k1")).await.unwrap();
    store
        .insert_account_with_eab(&account("a1"), "k1", 1)
        .await
        .unwrap();
    let second = store
        .insert_account_with_eab(&account("a2"), "k1", 2)
        .await
        .unwrap();
    assert_eq!(second, EabBinding::KeyUnavailable);
    assert_eq!(
        store.account("a2").await.unwrap(),
        None,
        "no account without a key"
    );
    let stored = store.eab_key("k1").await.unwrap().unwrap();
    assert_eq!(stored.account_id.as_deref(), Some("a1"));
}

async fn a_revoked_key_binds_nothing(store: Store) {
    store.create_eab_key(&key("k1")).await.unwrap();
    assert!(store.revoke_eab_key("k1", 5).await.unwrap());
    assert!(!store.revoke_eab_key("k1", 6).await.unwrap(), "once");
    assert!(!store.revoke_eab_key("nope", 6).await.unwrap());
    assert_eq!(
        store.eab_key("k1").await.unwrap().unwrap().revoked_at,
        Some(5)
    );
    let outcome = store
        .insert_account_with_eab(&account("a1"), "k1", 7)
        .await
        .unwrap();
    assert_eq!(outcome, EabBinding::KeyUnavailable);
    assert_eq!(store.account("a1").await.unwrap(), None);
    let missing = store
        .insert_account_with_eab(&account("a2"), "nope", 7)
        .await
        .unwrap();
    assert_eq!(missing, EabBinding::KeyUnavailable);
}

async fn an_existing_account_key_leaves_the_eab_key_free(store: Store) {
    store.insert_account(&account("a1")).await.unwrap();
    store.create_eab_key(&key("k1")).await.unwrap();
    let mut same_key = account("a2");
    same_key.key_thumbprint = account("a1").key_thumbprint;
    let outcome = store
        .insert_account_with_eab(&same_key, "k1", 3)
        .await
        .unwrap();
    assert!(matches!(outcome, EabBinding::Existing(ref a) if a.id == "a1"));
    assert!(store.eab_key("k1").await.unwrap().unwrap().is_usable());
}

async fn of_racing_new_accounts_one_key_binds_one(store: Store) {
    store.create_eab_key(&key("k1")).await.unwrap();
    let tries = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .insert_account_with_eab(&account(&format!("a{i}")), "k1", 1)
                .await
                .unwrap()
        })
    });
    let mut created = Vec::new();
    for t in tries {
        match t.await.unwrap() {
            EabBinding::Created(a) => created.push(a.id),
            EabBinding::KeyUnavailable => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one account: {created:?}");
    let stored = store.eab_key("k1").await.unwrap().unwrap();
    assert_eq!(stored.account_id, Some(created[0].clone()));
}
