//! Blocked keys: added once, found by digest, and blocked together with a
//! keyCompromise revocation.

#[macro_use]
mod common;

use common::{at_sign_precert, issued_order, processing_order, signing_final};
use domain::{FinalizeStep, OrderStatus, ProblemKind};
use store::{BlockedKey, CertificateState, KeyDigest, NewCertificate, Store, now_ms};

on_both_backends!(
    an_operator_blocks_a_key_once,
    a_key_compromise_revocation_blocks_the_key_with_it,
    a_revocation_for_another_reason_can_be_raised_to_key_compromise,
    no_key_is_blocked_for_a_certificate_not_issued,
    a_key_compromise_revokes_every_unexpired_certificate_for_the_key,
    a_key_compromise_revokes_the_precertificates_for_the_key_too,
    a_key_blocked_while_its_order_is_in_flight_gets_no_serial,
    a_stale_claim_is_not_superseded_for_a_blocked_key,
    a_claim_lost_to_another_delivery_does_not_fail_the_order,
);
on_both_backends!(url: a_revocation_racing_a_claim_never_leaves_it_unrevoked);

fn operator_entry(digest: &KeyDigest, comment: &str) -> BlockedKey {
    BlockedKey {
        digest: digest.clone(),
        revoked_serial: None,
        comment: comment.into(),
        created_at: now_ms(),
    }
}

async fn an_operator_blocks_a_key_once(store: Store) {
    let key = KeyDigest::of_spki(b"a key's SPKI");
    let other = KeyDigest::of_spki(b"another key's SPKI");
    assert!(!store.is_key_blocked(&key).await.unwrap());
    assert_eq!(store.blocked_key(&key).await.unwrap(), None);
    let first = operator_entry(&key, "published on a paste site");
    assert!(store.block_key(&first).await.unwrap());
    assert!(
        !store
            .block_key(&operator_entry(&key, "again"))
            .await
            .unwrap(),
        "a second block of the same key adds nothing"
    );
    assert!(store.is_key_blocked(&key).await.unwrap());
    assert_eq!(store.blocked_key(&key).await.unwrap(), Some(first));
    assert!(!store.is_key_blocked(&other).await.unwrap());
}

async fn a_key_compromise_revocation_blocks_the_key_with_it(store: Store) {
    let now = now_ms();
    issued_order(&store, "o1", "01ab", now).await;
    let key = KeyDigest::of_spki(b"the certificate's key");
    assert!(
        store
            .revoke_for_key_compromise("01ab", &key, now)
            .await
            .unwrap()
            .revoked
    );
    let cert = store.certificate("01ab").await.unwrap().unwrap();
    assert_eq!((cert.revoked_at, cert.revoked_reason), (Some(now), Some(1)));
    let blocked = store.blocked_key(&key).await.unwrap().unwrap();
    assert_eq!(blocked.revoked_serial.as_deref(), Some("01ab"));
    assert_eq!(blocked.created_at, now);
    // Once: a second request changes neither the certificate nor the entry.
    assert!(
        !store
            .revoke_for_key_compromise("01ab", &key, now + 5)
            .await
            .unwrap()
            .revoked
    );
    assert_eq!(store.certificate("01ab").await.unwrap().unwrap(), cert);
    assert_eq!(store.blocked_key(&key).await.unwrap(), Some(blocked));
    assert!(!store.revoke_certificate("01ab", 0, now).await.unwrap());
}

async fn a_revocation_for_another_reason_can_be_raised_to_key_compromise(store: Store) {
    let now = now_ms();
    issued_order(&store, "o1", "02", now).await;
    assert!(store.revoke_certificate("02", 4, now).await.unwrap());
    let key = KeyDigest::of_spki(b"superseded, then compromised");
    assert!(
        !store.is_key_blocked(&key).await.unwrap(),
        "a revocation for another reason blocks nothing"
    );
    assert!(
        store
            .revoke_for_key_compromise("02", &key, now + 1000)
            .await
            .unwrap()
            .revoked
    );
    let cert = store.certificate("02").await.unwrap().unwrap();
    assert_eq!(
        (cert.revoked_at, cert.revoked_reason),
        (Some(now), Some(1)),
        "the reason is raised, the revocation time stays"
    );
    assert!(store.is_key_blocked(&key).await.unwrap());
}

async fn no_key_is_blocked_for_a_certificate_not_issued(store: Store) {
    let now = now_ms();
    signing_final(&store, "o1", "03", now).await;
    let key = KeyDigest::of_spki(b"a key never certified");
    for serial in ["03", "unknown"] {
        assert!(
            !store
                .revoke_for_key_compromise(serial, &key, now)
                .await
                .unwrap()
                .revoked
        );
    }
    assert!(!store.is_key_blocked(&key).await.unwrap());
    assert_eq!(
        store.certificate("03").await.unwrap().unwrap().revoked_at,
        None
    );
}

/// A `valid` order `id` whose certificate `serial` certifies `key` and
/// expires at `not_after`.
async fn issued_for_key(store: &Store, id: &str, serial: &str, key: &KeyDigest, not_after: i64) {
    let now = now_ms();
    precert_for_key(store, id, serial, key, not_after, true).await;
    assert!(store.store_scts(id, serial, b"scts", now).await.unwrap());
    assert!(store.begin_final_signing(serial).await.unwrap());
    assert!(store.store_final(id, serial, b"final").await.unwrap());
}

async fn a_key_compromise_revokes_every_unexpired_certificate_for_the_key(store: Store) {
    let now = now_ms();
    let (key, other_key) = (
        KeyDigest::of_spki(b"compromised"),
        KeyDigest::of_spki(b"fine"),
    );
    let day = 86_400_000;
    issued_for_key(&store, "o1", "0a", &key, now + day).await;
    issued_for_key(&store, "o2", "0b", &key, now + day).await;
    issued_for_key(&store, "o3", "0c", &key, now + day).await;
    issued_for_key(&store, "o4", "0d", &key, now - 1).await;
    issued_for_key(&store, "o5", "0e", &other_key, now + day).await;
    // Revoked earlier for another reason (superseded): raised, time kept.
    assert!(store.revoke_certificate("0c", 4, now - 10).await.unwrap());

    let outcome = store
        .revoke_for_key_compromise("0a", &key, now)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        store::KeyCompromiseRevocation {
            revoked: true,
            others: 2
        }
    );
    let state = async |serial: &str| {
        let cert = store.certificate(serial).await.unwrap().unwrap();
        (cert.revoked_at, cert.revoked_reason)
    };
    assert_eq!(state("0a").await, (Some(now), Some(1)));
    assert_eq!(
        state("0b").await,
        (Some(now), Some(1)),
        "same key, revoked too"
    );
    assert_eq!(
        state("0c").await,
        (Some(now - 10), Some(1)),
        "reason raised"
    );
    assert_eq!(state("0d").await, (None, None), "expired: left alone");
    assert_eq!(state("0e").await, (None, None), "another key: left alone");
    assert!(store.is_key_blocked(&key).await.unwrap());
    // The others are already revoked for keyCompromise: nothing left to do.
    let again = store
        .revoke_for_key_compromise("0b", &key, now + 5)
        .await
        .unwrap();
    assert_eq!(
        again,
        store::KeyCompromiseRevocation {
            revoked: false,
            others: 0
        }
    );
}

/// Serial `serial` of order `id` claimed for `key` until `not_after`
/// (`precert-signing`), and with `signed` its precertificate stored
/// (`precert`).
async fn precert_for_key(
    store: &Store,
    id: &str,
    serial: &str,
    key: &KeyDigest,
    not_after: i64,
    signed: bool,
) {
    let now = now_ms();
    at_sign_precert(store, id, now).await;
    let cert = NewCertificate {
        key: key.clone(),
        not_after,
        ..common::new_certificate(serial, id)
    };
    assert!(
        store
            .claim_precert(&cert, None, now, now + 60_000)
            .await
            .unwrap()
    );
    if signed {
        assert!(
            store
                .store_precert(id, serial, b"precert", now)
                .await
                .unwrap()
        );
    }
}

/// Orders still in the pipeline with the compromised key hold
/// precertificates (or may: `precert-signing`), which have revocation
/// status: they are revoked with the rest, not left to be issued unrevoked.
async fn a_key_compromise_revokes_the_precertificates_for_the_key_too(store: Store) {
    let now = now_ms();
    let key = KeyDigest::of_spki(b"compromised while orders were in flight");
    issued_for_key(&store, "o1", "1a", &key, now + 86_400_000).await;
    precert_for_key(&store, "o2", "1b", &key, now + 86_400_000, true).await;
    precert_for_key(&store, "o3", "1c", &key, now + 86_400_000, false).await;
    let outcome = store
        .revoke_for_key_compromise("1a", &key, now)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        store::KeyCompromiseRevocation {
            revoked: true,
            others: 2
        }
    );
    for serial in ["1b", "1c"] {
        let cert = store.certificate(serial).await.unwrap().unwrap();
        assert_eq!(
            (cert.revoked_at, cert.revoked_reason),
            (Some(now), Some(1)),
            "{serial}"
        );
    }
}

fn claim_for(serial: &str, id: &str, key: &KeyDigest) -> NewCertificate {
    NewCertificate {
        key: key.clone(),
        not_after: now_ms() + 86_400_000,
        ..common::new_certificate(serial, id)
    }
}

/// The order ended `invalid` with the CSR key's refusal, and holds no
/// serial but `kept` (a claim made before the key was blocked).
async fn assert_refused_for_blocked_key(store: &Store, id: &str, kept: &[&str]) {
    let order = store.order(id).await.unwrap().unwrap();
    assert_eq!(order.status, OrderStatus::Invalid, "{order:?}");
    assert_eq!(order.step, None);
    let error = order.error.expect("the order says why");
    assert_eq!(error.kind, ProblemKind::BadCsr, "{error:?}");
    assert!(error.detail.contains("blocklist"), "{}", error.detail);
    let serials: Vec<String> = store
        .certificates_for_order(id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.serial)
        .collect();
    assert_eq!(serials, kept, "no serial claimed for the blocked key");
}

/// A key compromised while an order for it was at check-caa (issue 16):
/// the revocation of another certificate for the key blocks it, and when
/// the order reaches the signer its claim is refused, no serial written,
/// and the order ends `invalid` instead of getting an unrevoked
/// certificate. Another key's order is claimed as before.
async fn a_key_blocked_while_its_order_is_in_flight_gets_no_serial(store: Store) {
    let now = now_ms();
    let key = KeyDigest::of_spki(b"compromised after finalize");
    processing_order(&store, "o2", now, now + 60_000).await;
    issued_for_key(&store, "o1", "2a", &key, now + 86_400_000).await;
    let revoked = store.revoke_for_key_compromise("2a", &key, now).await;
    assert!(revoked.unwrap().revoked);
    assert!(
        store
            .advance_step("o2", FinalizeStep::CheckCaa, FinalizeStep::SignPrecert, now)
            .await
            .unwrap()
    );
    let claim = claim_for("2b", "o2", &key);
    assert!(!store.claim_precert(&claim, None, now, now).await.unwrap());
    assert_refused_for_blocked_key(&store, "o2", &[]).await;
    assert_eq!(store.certificate("2b").await.unwrap(), None);
    // Ended, so a redelivery claims nothing either.
    assert!(!store.claim_precert(&claim, None, now, now).await.unwrap());

    at_sign_precert(&store, "o3", now_ms()).await;
    let other = claim_for("2c", "o3", &KeyDigest::of_spki(b"another key"));
    assert!(store.claim_precert(&other, None, now, now).await.unwrap());
}

/// A claim made before an operator blocked the key, found stale: it is not
/// superseded with a fresh serial; the order ends `invalid`, the old
/// serial kept as it was (revocable).
async fn a_stale_claim_is_not_superseded_for_a_blocked_key(store: Store) {
    let now = now_ms();
    let key = KeyDigest::of_spki(b"blocked by an operator");
    at_sign_precert(&store, "o1", now_ms()).await;
    let stale = now - 120_000;
    let first = claim_for("3a", "o1", &key);
    assert!(
        store
            .claim_precert(&first, None, stale, stale)
            .await
            .unwrap()
    );
    assert!(
        store
            .block_key(&operator_entry(&key, "published"))
            .await
            .unwrap()
    );
    let fresh = claim_for("3b", "o1", &key);
    assert!(
        !store
            .claim_precert(&fresh, Some("3a"), now, now)
            .await
            .unwrap()
    );
    assert_refused_for_blocked_key(&store, "o1", &["3a"]).await;
    let kept = store.certificate("3a").await.unwrap().unwrap();
    assert_eq!(kept.state, CertificateState::PrecertSigning);
}

/// Another delivery claimed the order before the key was blocked: a later
/// claim is refused, but the order is the first claim's (its signer
/// stores what it signs, and the revocation covered its serial), not
/// ended by the refusal.
async fn a_claim_lost_to_another_delivery_does_not_fail_the_order(store: Store) {
    let now = now_ms();
    let key = KeyDigest::of_spki(b"blocked after the claim");
    at_sign_precert(&store, "o1", now_ms()).await;
    let winner = claim_for("4a", "o1", &key);
    assert!(store.claim_precert(&winner, None, now, now).await.unwrap());
    assert!(
        store
            .block_key(&operator_entry(&key, "published"))
            .await
            .unwrap()
    );
    let loser = claim_for("4b", "o1", &key);
    assert!(!store.claim_precert(&loser, None, now, now).await.unwrap());
    let order = store.order("o1").await.unwrap().unwrap();
    assert_eq!(order.status, OrderStatus::Processing);
    assert_eq!(order.certificate_serial.as_deref(), Some("4a"));
    assert_eq!(order.error, None);
    assert_eq!(store.certificate("4b").await.unwrap(), None);
}

/// Claims and a keyCompromise revocation of their key at once, from two
/// connections (two replicas): whichever commits first, no serial for the
/// key is left unrevoked once it is blocked — each claim was either
/// refused or revoked by the revocation (PostgreSQL: the key's lock).
async fn a_revocation_racing_a_claim_never_leaves_it_unrevoked(store: Store, url: String) {
    const ORDERS: usize = 8;
    let other = Store::connect(&url).await.unwrap();
    let now = now_ms();
    for round in 0..ORDERS {
        let key = KeyDigest::of_spki(format!("raced key {round}").as_bytes());
        let (issued, id) = (format!("i{round}"), format!("o{round}"));
        let serial = format!("{round:02x}5a");
        issued_for_key(&store, &issued, &serial, &key, now + 86_400_000).await;
        at_sign_precert(&store, &id, now_ms()).await;
        let claim = {
            let (store, cert) = (
                store.clone(),
                claim_for(&format!("{round:02x}5b"), &id, &key),
            );
            tokio::spawn(async move { store.claim_precert(&cert, None, now, now).await })
        };
        let revoke = {
            let (other, key, serial) = (other.clone(), key.clone(), serial.clone());
            tokio::spawn(async move { other.revoke_for_key_compromise(&serial, &key, now).await })
        };
        let claimed = claim.await.unwrap().unwrap();
        assert!(revoke.await.unwrap().unwrap().revoked);
        let certs = store.certificates_for_order(&id).await.unwrap();
        if claimed {
            assert_eq!(certs.len(), 1, "{certs:#?}");
            assert_eq!(certs[0].revoked_reason, Some(1), "claimed first: revoked");
        } else {
            assert_refused_for_blocked_key(&store, &id, &[]).await;
        }
    }
    other.close().await;
}
