//! ACME Renewal Information: a certificate's facts with its renew-now mark,
//! marks made once, and one live replacement per certificate — taken over
//! only from a dead order, and never twice under a race.

#[macro_use]
mod common;

use common::{ACCOUNT, issued_order, order};
use store::{CertificateState, RenewNowMark, Store, now_ms};

on_both_backends!(
    facts_show_the_certificate_and_its_revocation,
    a_serial_is_marked_renew_now_once,
    a_replacing_order_claims_the_certificate_and_shows_its_cert_id,
    a_dead_replacement_passes_its_claim_on,
    a_finalized_replacement_keeps_its_claim,
    racing_replacements_commit_once,
);

const CERT_ID: &str = "a2V5LWlk.AaI";

async fn facts_show_the_certificate_and_its_revocation(store: Store) {
    assert_eq!(store.renewal_facts("01a2").await.unwrap(), None);
    let now = now_ms();
    issued_order(&store, "o1", "01a2", now).await;
    let facts = store.renewal_facts("01a2").await.unwrap().unwrap();
    assert_eq!(facts.serial, "01a2");
    assert_eq!(facts.account_id, ACCOUNT);
    assert_eq!(facts.state, CertificateState::Issued);
    assert!(facts.not_before < facts.not_after);
    assert_eq!(facts.final_der.as_deref(), Some(&b"final"[..]));
    assert_eq!((facts.revoked_at, facts.renew_now), (None, None));
    assert!(store.revoke_certificate("01a2", 4, now + 5).await.unwrap());
    let revoked = store.renewal_facts("01a2").await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(now + 5));
}

async fn a_serial_is_marked_renew_now_once(store: Store) {
    let now = now_ms();
    issued_order(&store, "o1", "01a2", now).await;
    let why = Some("https://kiln.test/incident/1");
    let mark = |serial: &'static str, url, at| {
        let store = store.clone();
        async move { store.mark_renew_now(serial, url, at).await.unwrap() }
    };
    assert_eq!(mark("ffff", why, now).await, RenewNowMark::Unknown);
    assert_eq!(mark("01a2", why, now).await, RenewNowMark::Marked);
    assert_eq!(
        mark("01a2", None, now + 9).await,
        RenewNowMark::AlreadyMarked
    );
    let marked = store.renewal_facts("01a2").await.unwrap().unwrap();
    let mark = marked.renew_now.expect("marked");
    assert_eq!(mark.marked_at, now, "the first mark stands");
    assert_eq!(mark.explanation_url.as_deref(), why);
    assert_eq!(store.renewal_facts("ffff").await.unwrap(), None);
}

/// Stores `id`, one name, replacing `serial`; whether it was accepted.
async fn replace(store: &Store, id: &str, serial: &str, expires_at: Option<i64>) -> bool {
    let (mut new, authzs) = order(id, ACCOUNT, &["kiln.test"]);
    new.replaces = Some(CERT_ID.into());
    if let Some(at) = expires_at {
        new.expires_at = at;
    }
    store
        .insert_replacing_order(&new, &authzs, serial)
        .await
        .unwrap()
}

async fn a_replacing_order_claims_the_certificate_and_shows_its_cert_id(store: Store) {
    issued_order(&store, "o1", "01a2", now_ms()).await;
    assert_eq!(store.replacing_order_id("01a2").await.unwrap(), None);
    assert!(replace(&store, "r1", "01a2", None).await);
    assert_eq!(
        store.replacing_order_id("01a2").await.unwrap().as_deref(),
        Some("r1")
    );
    let (shown, authzs) = store.order_with_authzs("r1").await.unwrap().unwrap();
    assert_eq!((shown.id.as_str(), authzs.len()), ("r1", 1));
    assert_eq!(shown.replaces.as_deref(), Some(CERT_ID));
    assert_eq!(
        store
            .order("r1")
            .await
            .unwrap()
            .unwrap()
            .replaces
            .as_deref(),
        Some(CERT_ID)
    );
    let plain = store.order("o1").await.unwrap().unwrap();
    assert_eq!(
        plain.replaces, None,
        "an order replacing nothing shows nothing"
    );
    // A second replacement while the first is pending: refused, and none
    // of it stored.
    assert!(!replace(&store, "r2", "01a2", None).await);
    assert_eq!(store.order("r2").await.unwrap(), None);
    assert!(store.authz("r2-a0").await.unwrap().is_none());
    assert_eq!(
        store.replacing_order_id("01a2").await.unwrap().as_deref(),
        Some("r1")
    );
}

async fn a_dead_replacement_passes_its_claim_on(store: Store) {
    let now = now_ms();
    issued_order(&store, "o1", "01a2", now).await;
    // Invalid (its authorization deactivated): the next order takes over.
    assert!(replace(&store, "r1", "01a2", None).await);
    assert!(store.deactivate_authz("r1-a0").await.unwrap());
    assert!(replace(&store, "r2", "01a2", None).await);
    assert_eq!(
        store.replacing_order_id("01a2").await.unwrap().as_deref(),
        Some("r2")
    );
    // The invalid order still shows what it tried to replace.
    let replaces = store.order("r1").await.unwrap().unwrap().replaces;
    assert_eq!(replaces.as_deref(), Some(CERT_ID));
    // r2 live: refused; r2 expired unfinished: taken over.
    assert!(!replace(&store, "r3", "01a2", None).await);
    issued_order(&store, "o2", "01b3", now).await;
    assert!(replace(&store, "r4", "01b3", Some(now - 1)).await);
    assert!(replace(&store, "r5", "01b3", None).await);
    assert_eq!(
        store.replacing_order_id("01b3").await.unwrap().as_deref(),
        Some("r5")
    );
}

async fn a_finalized_replacement_keeps_its_claim(store: Store) {
    let now = now_ms();
    issued_order(&store, "o1", "01a2", now).await;
    // The replacement finalized (processing, then valid): it stands.
    let (mut new, authzs) = order("r1", ACCOUNT, &["r1.kiln.test"]);
    new.replaces = Some(CERT_ID.into());
    assert!(
        store
            .insert_replacing_order(&new, &authzs, "01a2")
            .await
            .unwrap()
    );
    common::make_ready(&store, "r1", 1).await;
    assert!(
        store
            .begin_finalize("r1", b"csr", now, now + 60_000, now + 60_000, None)
            .await
            .unwrap()
    );
    assert!(!replace(&store, "r2", "01a2", None).await, "processing");
}

async fn racing_replacements_commit_once(store: Store) {
    issued_order(&store, "o1", "01a2", now_ms()).await;
    let racers = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { replace(&store, &format!("r{i}"), "01a2", None).await })
    });
    let mut accepted = 0;
    for racer in racers {
        accepted += usize::from(racer.await.unwrap());
    }
    assert_eq!(accepted, 1, "exactly one replacement holds the claim");
}
