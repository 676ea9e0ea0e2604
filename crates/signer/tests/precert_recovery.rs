//! A signer killed between claiming an order's sign-precert step and storing
//! the precertificate (issue 16): its serial stays `precert-signing`
//! (revocable, never reused), and the redelivered SignPrecert, once the
//! claim is older than the step timeout, claims again with a fresh serial so
//! the order still completes. A younger claim is left to its signer.

mod fixtures;

use std::sync::Arc;

use domain::{FinalizeStep, OrderStatus};
use proto::Job;
use queue::Handler;
use signer::Signer;
use signer::certificate::Profile;
use store::{CertificateState, NewCertificate, Store, now_ms};

/// The fixture signer's step timeout.
const STEP_TIMEOUT_MS: i64 = 30_000;

async fn signer(dir: &std::path::Path) -> Arc<Signer> {
    let profile = Profile::new("http://kiln.test/ca/int.der", "http://kiln.test/ca/crl");
    let signer = fixtures::signer_in(dir, profile, Default::default()).await;
    assert_eq!(signer.step_timeout.as_millis() as i64, STEP_TIMEOUT_MS);
    Arc::new(signer)
}

/// What a signer that then died did: claim `id`'s step with `serial` at
/// `claimed_at`, and sign (or not) without storing anything.
async fn claim_and_die(signer: &Signer, id: &str, serial: &str, claimed_at: i64) {
    let order = signer.store.order(id).await.unwrap().unwrap();
    let cert = NewCertificate {
        serial: serial.into(),
        order_id: id.into(),
        account_id: order.account_id,
        not_before: claimed_at,
        not_after: claimed_at + 86_400_000,
        issuer_id: signer.ca.intermediate.id().to_string(),
        key: store::KeyDigest::of_spki(b"the CSR's key"),
        crl_shard: 0,
    };
    let deadline = claimed_at + STEP_TIMEOUT_MS;
    assert!(
        signer
            .store
            .claim_precert(&cert, None, claimed_at, deadline)
            .await
            .unwrap()
    );
}

fn sign_precert(id: &str) -> Job {
    Job::SignPrecert {
        order_id: id.into(),
    }
}

/// The rest of the pipeline by hand: SCTs stored as the ct-submitter
/// would, then the final signature.
async fn finish(signer: &Signer, store: &Store, id: &str) {
    let order = store.order(id).await.unwrap().unwrap();
    assert_eq!(order.step, Some(FinalizeStep::SubmitCt));
    let serial = order.certificate_serial.unwrap();
    let sct_list = fixtures::sct_list_extension();
    assert!(
        store
            .store_scts(id, &serial, &sct_list, now_ms() + 30_000)
            .await
            .unwrap()
    );
    let job = Job::SignFinal {
        order_id: id.into(),
    };
    assert_eq!(
        signer.handle(&job, 1).await.unwrap(),
        [Job::SubmitFinal {
            order_id: id.into()
        }]
    );
}

#[tokio::test]
async fn a_stale_claim_is_superseded_and_the_order_completes() {
    let dir = tempfile::tempdir().unwrap();
    let signer = signer(dir.path()).await;
    let store = signer.store.clone();
    let id = "crashed";
    fixtures::order_at_sign_precert(&store, id).await;
    // Claimed just over a step timeout ago; the signer died since.
    claim_and_die(&signer, id, "7f01", now_ms() - STEP_TIMEOUT_MS - 1_000).await;

    // The sweeper's re-drive (or the queue's redelivery) arrives.
    assert_eq!(
        signer.handle(&sign_precert(id), 2).await.unwrap(),
        [Job::SubmitCt {
            order_id: id.into()
        }]
    );
    let certs = store.certificates_for_order(id).await.unwrap();
    assert_eq!(certs.len(), 2, "{certs:#?}");
    let (old, new) = (&certs[0], &certs[1]);
    assert_eq!(old.serial, "7f01");
    assert_eq!(
        old.state,
        CertificateState::PrecertSigning,
        "kept, revocable"
    );
    assert_eq!(old.precert_der, None);
    assert_eq!(new.state, CertificateState::Precert);
    assert_ne!(new.serial, old.serial, "a fresh serial");
    let order = store.order(id).await.unwrap().unwrap();
    assert_eq!(order.certificate_serial.as_deref(), Some(&*new.serial));

    finish(&signer, &store, id).await;
    let order = store.order(id).await.unwrap().unwrap();
    assert_eq!(order.status, OrderStatus::Valid);
    assert_eq!(order.certificate_serial.as_deref(), Some(&*new.serial));
    let old = store.certificate("7f01").await.unwrap().unwrap();
    assert_eq!(
        old.state,
        CertificateState::PrecertSigning,
        "the abandoned claim is never issued nor reused"
    );
    assert!(store.revoke_by_operator("7f01", 0, now_ms()).await.unwrap());

    // Late redeliveries change nothing.
    assert!(
        signer
            .handle(&sign_precert(id), 3)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.certificates_for_order(id).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_claim_younger_than_the_step_timeout_is_left_to_its_signer() {
    let dir = tempfile::tempdir().unwrap();
    let signer = signer(dir.path()).await;
    let store = signer.store.clone();
    let id = "busy";
    fixtures::order_at_sign_precert(&store, id).await;
    // Another replica claimed a moment ago and is signing.
    claim_and_die(&signer, id, "7f02", now_ms() - 1_000).await;

    assert!(
        signer
            .handle(&sign_precert(id), 2)
            .await
            .unwrap()
            .is_empty(),
        "no second signature while the claim may be live"
    );
    let certs = store.certificates_for_order(id).await.unwrap();
    assert_eq!(certs.len(), 1, "{certs:#?}");
    assert_eq!(certs[0].state, CertificateState::PrecertSigning);
    let order = store.order(id).await.unwrap().unwrap();
    assert_eq!(
        (order.step, order.certificate_serial.as_deref()),
        (Some(FinalizeStep::SignPrecert), Some("7f02"))
    );
    // The claim set the step deadline to when it turns stale, so the
    // sweeper re-drives the order exactly when a delivery may take over.
    let claimed_at = certs[0].created_at;
    assert_eq!(order.step_deadline, Some(claimed_at + STEP_TIMEOUT_MS));
}
