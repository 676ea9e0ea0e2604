//! Issuers: recorded by the signer, read by the api and ct-submitter; each
//! certificate names the one that signs it.

#[macro_use]
mod common;

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
    common::processing_order(&store, "o1", store::now_ms(), store::now_ms() + 60_000).await;
    let mut cert = common::new_certificate("0a", "o1");
    store.reserve_serial(&cert).await.unwrap();
    let stored = store.certificate("0a").await.unwrap().unwrap();
    assert_eq!(stored.issuer_id.as_deref(), Some(test.id.as_str()));
    cert.serial = "0b".into();
    cert.issuer_id = "f".repeat(64);
    assert!(store.reserve_serial(&cert).await.is_err(), "unknown issuer");
}
