//! Issuers: recorded by the signer, read by the api and ct-submitter; each
//! certificate names the one that signs it.

#[macro_use]
mod common;

use domain::FinalizeStep;
use store::{Issuer, Store};

on_both_backends!(issuers_are_recorded_once_and_named_by_certificates);

async fn issuers_are_recorded_once_and_named_by_certificates(store: Store) {
    let test = common::issuer();
    // Recorded by the harness already: recording again changes nothing.
    store.record_issuer(&test).await.unwrap();
    let read = store
        .issuer(Some(&test.id))
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(*read, test);
    assert_eq!(test.id.len(), 64, "hex SHA-256");

    let newer = Issuer::new(b"another intermediate".to_vec(), "another chain\n".into());
    assert_ne!(newer.id, test.id);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    store.record_issuer(&newer).await.unwrap();
    // A certificate from before issuers were recorded gets the newest one.
    assert_eq!(*store.issuer(None).await.unwrap().unwrap(), newer);
    assert_eq!(store.issuer(Some("00")).await.unwrap(), None);

    // Certificates name their issuer; one that was never recorded is refused.
    let now = store::now_ms();
    for id in ["o1", "o2"] {
        common::processing_order(&store, id, now, now + 60_000).await;
        assert!(
            store
                .advance_step(id, FinalizeStep::CheckCaa, FinalizeStep::SignPrecert, now)
                .await
                .unwrap()
        );
    }
    let mut cert = common::new_certificate("0a", "o1");
    assert!(store.claim_precert(&cert, None, now, now).await.unwrap());
    let stored = store.certificate("0a").await.unwrap().unwrap();
    assert_eq!(stored.issuer_id.as_deref(), Some(test.id.as_str()));
    cert.serial = "0b".into();
    cert.order_id = "o2".into();
    cert.issuer_id = "f".repeat(64);
    assert!(
        store.claim_precert(&cert, None, now, now).await.is_err(),
        "unknown issuer"
    );
    let o2 = store.order("o2").await.unwrap().unwrap();
    assert_eq!(o2.certificate_serial, None, "the refused claim rolled back");
}

on_both_backends!(url: alternate_chains_are_the_recording_signers);

/// Alternate chains (RFC 8555 §7.4.2) are stored with the issuer, in order,
/// and are what the signer recorded last: a cross-signature added to (or
/// taken from) a recorded intermediate shows when its signer starts again.
/// Another process reads them from the database, not from its own memory.
async fn alternate_chains_are_the_recording_signers(store: Store, url: String) {
    let plain = Issuer::new(b"cross-signed intermediate".to_vec(), "default\n".into());
    let alternates = vec!["by the second root\n".to_string(), "by a third\n".into()];
    let offering = plain.clone().with_alternate_chains(alternates.clone());
    assert_eq!(offering.id, plain.id, "named by the certificate alone");
    assert_eq!(offering.alternate_chain(1), Some("by the second root\n"));
    assert_eq!(offering.alternate_chain(2), Some("by a third\n"));
    assert_eq!(offering.alternate_chain(0), None, "alternates count from 1");
    assert_eq!(offering.alternate_chain(3), None);

    store.record_issuer(&plain).await.unwrap();
    let elsewhere = Store::connect(&url).await.unwrap();
    let read = elsewhere.issuer(Some(&plain.id)).await.unwrap().unwrap();
    assert!(read.alternate_chains_pem.is_empty(), "{read:?}");

    // The signer starts again with a cross-signature: the row gains it,
    // its certificate and default chain unchanged.
    store.record_issuer(&offering).await.unwrap();
    let fresh = Store::connect(&url).await.unwrap();
    assert_eq!(
        *fresh.issuer(Some(&plain.id)).await.unwrap().unwrap(),
        offering
    );
    assert_eq!(
        *store.issuer(Some(&plain.id)).await.unwrap().unwrap(),
        offering,
        "the recording process sees its own record at once"
    );

    // And without it again: none.
    store.record_issuer(&plain).await.unwrap();
    let fresh = Store::connect(&url).await.unwrap();
    assert_eq!(
        *fresh.issuer(Some(&plain.id)).await.unwrap().unwrap(),
        plain
    );
    for handle in [elsewhere, fresh] {
        handle.close().await;
    }
}

on_both_backends!(url: issuers_recorded_before_alternates_have_none);

/// A row written without the column (as every row before migration 13 was)
/// reads with no alternate chains.
async fn issuers_recorded_before_alternates_have_none(store: Store, url: String) {
    let der = match url.starts_with("sqlite") {
        true => "X'0102'",
        false => "'\\x0102'::bytea",
    };
    store
        .execute_admin(&format!(
            "INSERT INTO issuers (id, certificate_der, chain_pem, created_at) \
             VALUES ('old', {der}, 'old chain', 1)"
        ))
        .await
        .unwrap();
    let old = store
        .issuer(Some("old"))
        .await
        .unwrap()
        .expect("the old row");
    assert_eq!(old.certificate_der, [1, 2]);
    assert_eq!(old.chain_pem, "old chain");
    assert!(old.alternate_chains_pem.is_empty(), "{old:?}");
    assert_eq!(old.alternate_chain(1), None);
}
