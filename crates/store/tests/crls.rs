//! CRLs: a revocation is pending until a stored CRL lists it as it was
//! read, CRL numbers only grow, and the operator can revoke a
//! precertificate whose final certificate was never signed.

#[macro_use]
mod common;

use common::{issued_order, issuer, signing_final};
use store::{RevokedEntry, Store, StoredCrl, now_ms};

on_both_backends!(
    a_revocation_is_pending_until_a_crl_lists_it,
    a_reason_changed_while_the_crl_was_made_stays_pending,
    crl_numbers_only_grow,
    the_operator_revokes_a_precertificate,
    entries_stay_until_their_certificate_expires,
);

const DAY_MS: i64 = 86_400_000;

fn crl(number: i64, listed: &[RevokedEntry]) -> StoredCrl {
    StoredCrl {
        issuer_id: issuer().id,
        shard: 0,
        name: "abcd/0.crl".into(),
        number,
        this_update: number * 1000,
        next_update: number * 1000 + DAY_MS,
        entries: listed.len() as i64,
        der: format!("crl {number}").into_bytes(),
    }
}

async fn a_revocation_is_pending_until_a_crl_lists_it(store: Store) {
    let now = now_ms();
    let id = issuer().id;
    issued_order(&store, "o1", "01", now).await;
    issued_order(&store, "o2", "02", now).await;
    assert!(store.crl_shards_pending(&id).await.unwrap().is_empty());
    assert!(store.revoke_certificate("01", 4, now).await.unwrap());
    assert_eq!(store.crl_shards_pending(&id).await.unwrap(), vec![0]);
    let entries = store.crl_entries(&id, 0, now - DAY_MS).await.unwrap();
    let listed = RevokedEntry {
        serial: "01".into(),
        revoked_at: now,
        reason: Some(4),
        pending: true,
    };
    assert_eq!(entries, vec![listed.clone()], "only the revoked one");
    assert!(store.crl_entries(&id, 1, 0).await.unwrap().is_empty());

    assert!(store.store_crl(&crl(1, &entries), &entries).await.unwrap());
    assert!(store.crl_shards_pending(&id).await.unwrap().is_empty());
    let after = store.crl_entries(&id, 0, now - DAY_MS).await.unwrap();
    assert_eq!(
        after,
        vec![RevokedEntry {
            pending: false,
            ..listed
        }]
    );
    let served = store.crl_named("abcd/0.crl").await.unwrap().unwrap();
    assert_eq!(served, crl(1, &entries));
    assert_eq!(store.crl_named("abcd/1.crl").await.unwrap(), None);
    let statuses = store.crl_statuses(&id).await.unwrap();
    assert_eq!(
        (statuses.len(), statuses[0].number, statuses[0].shard),
        (1, 1, 0)
    );
}

async fn a_reason_changed_while_the_crl_was_made_stays_pending(store: Store) {
    let now = now_ms();
    let id = issuer().id;
    issued_order(&store, "o1", "01", now).await;
    assert!(store.revoke_certificate("01", 4, now).await.unwrap());
    let read = store.crl_entries(&id, 0, now - DAY_MS).await.unwrap();
    // Between the updater's read and its store: the key is found compromised.
    assert!(store.revoke_by_operator("01", 1, now + 5).await.unwrap());
    assert!(store.store_crl(&crl(1, &read), &read).await.unwrap());
    assert_eq!(
        store.crl_shards_pending(&id).await.unwrap(),
        vec![0],
        "the new reason is on no CRL yet"
    );
    let now_read = store.crl_entries(&id, 0, now - DAY_MS).await.unwrap();
    assert_eq!(
        (
            now_read[0].reason,
            now_read[0].revoked_at,
            now_read[0].pending
        ),
        (Some(1), now, true),
        "the revocation time stands, the reason is the new one"
    );
}

async fn crl_numbers_only_grow(store: Store) {
    assert!(store.store_crl(&crl(5, &[]), &[]).await.unwrap());
    assert!(!store.store_crl(&crl(5, &[]), &[]).await.unwrap());
    assert!(!store.store_crl(&crl(4, &[]), &[]).await.unwrap());
    let kept = store.crl_named("abcd/0.crl").await.unwrap().unwrap();
    assert_eq!(kept.number, 5, "an older CRL never replaces a newer one");
    assert!(store.store_crl(&crl(6, &[]), &[]).await.unwrap());
    let kept = store.crl_named("abcd/0.crl").await.unwrap().unwrap();
    assert_eq!((kept.number, kept.der), (6, b"crl 6".to_vec()));
}

async fn the_operator_revokes_a_precertificate(store: Store) {
    let now = now_ms();
    // The precertificate is signed; the final signature may never come.
    signing_final(&store, "o1", "01", now).await;
    assert!(
        !store.revoke_certificate("01", 0, now).await.unwrap(),
        "an ACME revocation needs the certificate"
    );
    assert!(store.revoke_by_operator("01", 0, now).await.unwrap());
    assert!(
        !store.revoke_by_operator("01", 0, now).await.unwrap(),
        "once per reason"
    );
    assert!(!store.revoke_by_operator("unknown", 0, now).await.unwrap());
    let entries = store.crl_entries(&issuer().id, 0, 0).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].serial.as_str(), entries[0].reason),
        ("01", Some(0))
    );
}

async fn entries_stay_until_their_certificate_expires(store: Store) {
    let now = now_ms();
    // `issued_order`'s certificate expires a second after it is reserved.
    issued_order(&store, "o1", "01", now).await;
    assert!(store.revoke_certificate("01", 0, now).await.unwrap());
    let id = issuer().id;
    assert_eq!(store.crl_entries(&id, 0, now).await.unwrap().len(), 1);
    assert!(
        store
            .crl_entries(&id, 0, now + 10_000)
            .await
            .unwrap()
            .is_empty()
    );
}
