//! Certificates: read by serial or by order, and revoked once.

#[macro_use]
mod common;

use common::{issued_order, new_certificate, processing_order};
use domain::FinalizeStep;
use store::{CertificateState, Store, now_ms};

on_both_backends!(
    revocation_happens_once,
    only_an_issued_certificate_is_revoked,
    an_orders_certificates_are_listed_oldest_first,
);

async fn revocation_happens_once(store: Store) {
    let now = now_ms();
    issued_order(&store, "o1", "01ab", now).await;
    assert!(store.revoke_certificate("01ab", 1, now).await.unwrap());
    assert!(!store.revoke_certificate("01ab", 1, now).await.unwrap());
    let c = store.certificate("01ab").await.unwrap().unwrap();
    assert_eq!((c.revoked_at, c.revoked_reason), (Some(now), Some(1)));
    assert_eq!(c.state, CertificateState::Issued);
}

async fn only_an_issued_certificate_is_revoked(store: Store) {
    let now = now_ms();
    common::signing_final(&store, "o1", "01", now).await;
    assert!(!store.revoke_certificate("01", 1, now).await.unwrap());
    assert!(!store.revoke_certificate("unknown", 1, now).await.unwrap());
    assert_eq!(
        store.certificate("01").await.unwrap().unwrap().revoked_at,
        None
    );
    assert_eq!(store.certificate("unknown").await.unwrap(), None);
}

async fn an_orders_certificates_are_listed_oldest_first(store: Store) {
    let now = now_ms();
    processing_order(&store, "o1", now, now + 60_000).await;
    assert!(store.certificates_for_order("o1").await.unwrap().is_empty());
    store
        .advance_step("o1", FinalizeStep::CheckCaa, FinalizeStep::SignPrecert, now)
        .await
        .unwrap();
    assert!(
        store
            .claim_precert(&new_certificate("01", "o1"), None, now, now)
            .await
            .unwrap()
    );
    assert!(store.store_precert("o1", "01", b"p1", now).await.unwrap());
    assert!(store.store_scts("o1", "01", b"s1", now).await.unwrap());
    assert!(store.begin_final_signing("01").await.unwrap());
    assert!(store.restart_issuance("o1", "01", now).await.unwrap());
    // Created after the first, whatever the clock says within a millisecond.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(
        store
            .claim_precert(&new_certificate("02", "o1"), None, now_ms(), now)
            .await
            .unwrap()
    );
    let certs = store.certificates_for_order("o1").await.unwrap();
    let listed: Vec<_> = certs.iter().map(|c| (c.serial.as_str(), c.state)).collect();
    assert_eq!(
        listed,
        vec![
            ("01", CertificateState::Abandoned),
            ("02", CertificateState::PrecertSigning)
        ]
    );
    assert_eq!(certs[0], store.certificate("01").await.unwrap().unwrap());
    assert!(
        store
            .certificates_for_order("other")
            .await
            .unwrap()
            .is_empty()
    );
}
