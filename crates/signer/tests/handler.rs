//! The signer stage against a real (SQLite) store: a redelivered or crashed
//! "sign final" never yields two final certificates for one serial.
//!
//! The other stages are played by hand: the CT step stores a well-formed SCT
//! list, as the ct-submitter would, and every job the signer returns is
//! driven until the pipeline is quiet.

mod fixtures;

use std::collections::VecDeque;
use std::sync::Arc;

use domain::{FinalizeStep, OrderStatus};
use openssl::x509::X509;
use proto::Job;
use queue::Handler;
use signer::Signer;
use signer::certificate::Profile;
use store::{CertificateRecord, CertificateState, Store, now_ms};

struct Fixture {
    signer: Arc<Signer>,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let profile = Profile::new("http://kiln.test/ca/int.der", "http://kiln.test/ca/crl");
    let signer = fixtures::signer_in(dir.path(), profile, Default::default()).await;
    let store = signer.store.clone();
    Fixture {
        signer: Arc::new(signer),
        store,
        _dir: dir,
    }
}

/// The ct-submitter's part: SCTs stored for the order's current serial.
async fn play_ct_step(store: &Store, order_id: &str) -> Vec<Job> {
    let order = store.order(order_id).await.unwrap().unwrap();
    if order.step != Some(FinalizeStep::SubmitCt) {
        return vec![];
    }
    let serial = order.certificate_serial.unwrap();
    store
        .store_scts(
            order_id,
            &serial,
            &fixtures::sct_list_extension(),
            now_ms() + 30_000,
        )
        .await
        .unwrap();
    vec![Job::SignFinal {
        order_id: order_id.into(),
    }]
}

/// Runs `jobs` (and every job they lead to) to quiescence; returns the
/// SubmitFinal jobs the signer published.
async fn drive(f: &Fixture, jobs: Vec<Job>) -> Vec<Job> {
    let mut queue: VecDeque<Job> = jobs.into();
    let mut submit_final = Vec::new();
    let mut steps = 0;
    while let Some(job) = queue.pop_front() {
        steps += 1;
        assert!(steps < 100, "pipeline does not settle");
        let next = match &job {
            Job::SignPrecert { .. } | Job::SignFinal { .. } => {
                f.signer.handle(&job, 1).await.expect("signer job")
            }
            Job::SubmitCt { order_id } => play_ct_step(&f.store, order_id).await,
            Job::SubmitFinal { .. } => {
                submit_final.push(job.clone());
                vec![]
            }
            other => panic!("unexpected job {other:?}"),
        };
        queue.extend(next);
    }
    submit_final
}

/// Takes an order from sign-precert to sign-final (precertificate signed,
/// SCTs stored) and returns its serial.
async fn to_sign_final(f: &Fixture, id: &str) -> String {
    fixtures::order_at_sign_precert(&f.store, id).await;
    let next = f
        .signer
        .handle(
            &Job::SignPrecert {
                order_id: id.into(),
            },
            1,
        )
        .await
        .unwrap();
    assert_eq!(
        next,
        [Job::SubmitCt {
            order_id: id.into()
        }]
    );
    assert_eq!(
        play_ct_step(&f.store, id).await,
        [Job::SignFinal {
            order_id: id.into()
        }]
    );
    f.store
        .order(id)
        .await
        .unwrap()
        .unwrap()
        .certificate_serial
        .unwrap()
}

fn serial_of(der: &[u8]) -> String {
    let cert = X509::from_der(der).unwrap();
    let bytes = cert.serial_number().to_bn().unwrap().to_vec();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What must hold for an order whatever the redeliveries: valid, with
/// exactly one issued certificate, which is the order's; every other serial
/// abandoned with its precertificate kept and no final certificate.
async fn assert_one_final(store: &Store, id: &str) -> Vec<CertificateRecord> {
    let order = store.order(id).await.unwrap().unwrap();
    assert_eq!(order.status, OrderStatus::Valid, "{order:?}");
    let certs = store.certificates_for_order(id).await.unwrap();
    let issued: Vec<&CertificateRecord> = certs
        .iter()
        .filter(|c| c.state == CertificateState::Issued)
        .collect();
    assert_eq!(
        issued.len(),
        1,
        "exactly one issued certificate: {certs:#?}"
    );
    let issued = issued[0];
    assert_eq!(order.certificate_serial.as_deref(), Some(&*issued.serial));
    let final_der = issued.final_der.as_deref().expect("final certificate");
    assert_eq!(serial_of(final_der), issued.serial);
    assert!(ct_free_of_poison(final_der));
    for other in certs.iter().filter(|c| c.serial != issued.serial) {
        assert_eq!(other.state, CertificateState::Abandoned, "{other:#?}");
        assert!(other.final_der.is_none(), "abandoned serial has a final");
        let precert = other.precert_der.as_deref().expect("precert kept");
        assert_eq!(serial_of(precert), other.serial);
    }
    certs
}

fn ct_free_of_poison(der: &[u8]) -> bool {
    let cert = X509::from_der(der).unwrap();
    let text = String::from_utf8_lossy(&cert.to_text().unwrap()).into_owned();
    !text.contains("1.3.6.1.4.1.11129.2.4.3") && !text.contains("CT Precertificate Poison")
}

const ORDERS: usize = 20;

/// (a) Two deliveries of SignFinal at once, many times over: whichever way
/// they interleave, one final certificate per order and the order valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sign_final_deliveries_issue_once() {
    let f = fixture().await;
    let mut restarted = 0;
    for i in 0..ORDERS {
        let id = format!("conc{i}");
        let first_serial = to_sign_final(&f, &id).await;
        let job = Job::SignFinal {
            order_id: id.clone(),
        };
        let (a, b) = {
            let (s1, s2) = (f.signer.clone(), f.signer.clone());
            let (j1, j2) = (job.clone(), job.clone());
            let t1 = tokio::spawn(async move { s1.handle(&j1, 1).await });
            let t2 = tokio::spawn(async move { s2.handle(&j2, 2).await });
            (t1.await.unwrap().unwrap(), t2.await.unwrap().unwrap())
        };
        let mut next = a;
        next.extend(b);
        let submitted = drive(&f, next).await;
        assert_eq!(
            submitted.len(),
            1,
            "one SubmitFinal per order: {submitted:?}"
        );
        let certs = assert_one_final(&f.store, &id).await;
        if certs.len() > 1 {
            restarted += 1;
            assert_eq!(certs[0].serial, first_serial);
        }
        // A late third delivery changes nothing.
        assert!(f.signer.handle(&job, 3).await.unwrap().is_empty());
        assert_eq!(f.store.certificates_for_order(&id).await.unwrap(), certs);
    }
    println!("{restarted} of {ORDERS} orders went through a restart with a new serial");
}

/// (b) A crash after final signing was marked begun (the signature may
/// exist, nothing stored): the redelivered SignFinal never signs that serial
/// again, abandons it with its precertificate kept, and the order is issued
/// under a new serial.
#[tokio::test]
async fn sign_final_after_a_crash_starts_over_with_a_new_serial() {
    let f = fixture().await;
    let id = "crashed";
    let old = to_sign_final(&f, id).await;
    // The crashed signer got this far: intent committed, then nothing.
    assert!(f.store.begin_final_signing(&old).await.unwrap());

    let next = f
        .signer
        .handle(
            &Job::SignFinal {
                order_id: id.into(),
            },
            2,
        )
        .await
        .unwrap();
    assert_eq!(
        next,
        [Job::SignPrecert {
            order_id: id.into()
        }]
    );
    let abandoned = f.store.certificate(&old).await.unwrap().unwrap();
    assert_eq!(abandoned.state, CertificateState::Abandoned);
    assert!(abandoned.final_der.is_none());
    assert!(abandoned.precert_der.is_some(), "precert stays recorded");
    let order = f.store.order(id).await.unwrap().unwrap();
    assert_eq!(order.status, OrderStatus::Processing);
    assert_eq!(order.step, Some(FinalizeStep::SignPrecert));
    assert_eq!(order.certificate_serial, None);

    let submitted = drive(&f, next).await;
    assert_eq!(submitted.len(), 1);
    let certs = assert_one_final(&f.store, id).await;
    assert_eq!(certs.len(), 2, "{certs:#?}");
    let order = f.store.order(id).await.unwrap().unwrap();
    let new = order.certificate_serial.unwrap();
    assert_ne!(new, old, "a new serial");
    assert_eq!(
        f.store.certificate(&old).await.unwrap().unwrap().state,
        CertificateState::Abandoned,
        "the old serial is never issued"
    );

    // Redeliveries of either signing job after the fact do nothing.
    for job in [
        Job::SignFinal {
            order_id: id.into(),
        },
        Job::SignPrecert {
            order_id: id.into(),
        },
    ] {
        assert!(f.signer.handle(&job, 5).await.unwrap().is_empty());
    }
    assert_eq!(f.store.certificates_for_order(id).await.unwrap(), certs);
}

/// A redelivered SignFinal after the certificate was stored: no second
/// signature, no second SubmitFinal.
#[tokio::test]
async fn sign_final_redelivered_after_issuance_is_a_no_op() {
    let f = fixture().await;
    let id = "redelivered";
    to_sign_final(&f, id).await;
    let job = Job::SignFinal {
        order_id: id.into(),
    };
    assert_eq!(
        f.signer.handle(&job, 1).await.unwrap(),
        [Job::SubmitFinal {
            order_id: id.into()
        }]
    );
    let certs = assert_one_final(&f.store, id).await;
    assert_eq!(certs.len(), 1);
    assert!(f.signer.handle(&job, 2).await.unwrap().is_empty());
    assert_eq!(f.store.certificates_for_order(id).await.unwrap(), certs);
}
