//! A key blocked while its order is in flight gets no certificate (issue
//! 16): the order was finalized with a key that was not blocked then, and
//! the key is blocked (an operator, or a keyCompromise revocation of
//! another certificate for it) before the signer's step. The signer claims
//! nothing, signs nothing, and the order ends `invalid` with `badCSR`, the
//! api's answer for a blocked CSR key at finalize. Before, the order got a
//! certificate nobody had revoked.

mod fixtures;

use domain::{OrderStatus, ProblemKind};
use openssl::x509::X509Req;
use proto::Job;
use queue::Handler;
use signer::certificate::Profile;
use store::{BlockedKey, KeyDigest, Store, now_ms};

/// The blocklist's name for the key of order `id`'s stored CSR, as the api
/// names it (canonical SubjectPublicKeyInfo, SHA-256).
async fn csr_key(store: &Store, id: &str) -> KeyDigest {
    let order = store.order(id).await.unwrap().unwrap();
    let csr = X509Req::from_der(order.csr.as_deref().unwrap()).unwrap();
    let spki = csr.public_key().unwrap().public_key_to_der().unwrap();
    KeyDigest::of_spki(&pkix::canonical_spki_der(&spki).unwrap())
}

async fn sign_precert(signer: &signer::Signer, id: &str) -> Vec<Job> {
    let job = Job::SignPrecert {
        order_id: id.into(),
    };
    signer.handle(&job, 1).await.expect("signer job")
}

#[tokio::test]
async fn a_key_blocked_after_finalize_gets_no_precertificate() {
    let dir = tempfile::tempdir().unwrap();
    let profile = Profile::new("http://kiln.test/ca/int.der", "http://kiln.test/ca/crl");
    let signer = fixtures::signer_in(dir.path(), profile, Default::default()).await;
    let store = signer.store.clone();
    fixtures::order_at_sign_precert(&store, "blocked").await;
    fixtures::order_at_sign_precert(&store, "fine").await;
    let key = csr_key(&store, "blocked").await;
    let entry = BlockedKey {
        digest: key.clone(),
        revoked_serial: None,
        comment: "found published after the order was finalized".into(),
        created_at: now_ms(),
    };
    assert!(store.block_key(&entry).await.unwrap());

    assert_eq!(sign_precert(&signer, "blocked").await, []);
    let order = store.order("blocked").await.unwrap().unwrap();
    assert_eq!(order.status, OrderStatus::Invalid, "{order:?}");
    let error = order.error.expect("the order says why");
    assert_eq!(error.kind, ProblemKind::BadCsr, "{error:?}");
    assert!(error.detail.contains("blocklist"), "{}", error.detail);
    assert_eq!(order.certificate_serial, None, "no serial reserved");
    let certs = store.certificates_for_order("blocked").await.unwrap();
    assert!(certs.is_empty(), "no serial, no precertificate: {certs:#?}");
    // A redelivery finds the order ended and does nothing.
    assert_eq!(sign_precert(&signer, "blocked").await, []);
    assert!(
        store
            .certificates_for_order("blocked")
            .await
            .unwrap()
            .is_empty()
    );

    // Another key is signed as before.
    assert_ne!(csr_key(&store, "fine").await, key);
    assert_eq!(
        sign_precert(&signer, "fine").await,
        [Job::SubmitCt {
            order_id: "fine".into()
        }]
    );
    let certs = store.certificates_for_order("fine").await.unwrap();
    assert_eq!(certs.len(), 1);
    assert!(certs[0].precert_der.is_some());
}
