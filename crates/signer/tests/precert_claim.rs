//! Two deliveries of one SignPrecert at once (a redelivery, or the sweeper's
//! re-drive racing the original): exactly one precertificate is signed and
//! stored, and the delivery that loses the claim signs nothing (issue 16;
//! before, each reserved a serial and signed, and the loser's signed
//! precertificate was dropped).
//!
//! Signatures are counted through the lint metric: every precertificate
//! build (the lint, then the signature over the linted TBS) records its
//! lint outcome once per check, so the calls on one check's series count
//! the builds. This binary holds this one test, so the process-wide
//! recorder counts only its signers.

mod fixtures;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use domain::FinalizeStep;
use metrics::{Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder};
use metrics::{SharedString, Unit};
use openssl::x509::X509;
use proto::Job;
use queue::Handler;
use signer::certificate::Profile;
use store::CertificateState;

/// Precertificate builds (each one signature) since the recorder was set.
static PRECERT_BUILDS: AtomicU64 = AtomicU64::new(0);

struct Build;

impl CounterFn for Build {
    fn increment(&self, _: u64) {
        PRECERT_BUILDS.fetch_add(1, Ordering::SeqCst);
    }
    fn absolute(&self, _: u64) {}
}

/// Counts calls on `kiln_lint_failures_total{certificate="precert",
/// check="validity"}`, one per precertificate build; every other series is
/// dropped.
struct CountBuilds;

impl Recorder for CountBuilds {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let label = |k: &str, v: &str| key.labels().any(|l| l.key() == k && l.value() == v);
        if key.name() == "kiln_lint_failures_total"
            && label("certificate", "precert")
            && label("check", "validity")
        {
            Counter::from_arc(Arc::new(Build))
        } else {
            Counter::noop()
        }
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

const ORDERS: usize = 20;

fn serial_of(der: &[u8]) -> String {
    let cert = X509::from_der(der).unwrap();
    let bytes = cert.serial_number().to_bn().unwrap().to_vec();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deliveries_of_one_sign_precert_sign_once() {
    metrics::set_global_recorder(CountBuilds).expect("the only recorder of this binary");
    let dir = tempfile::tempdir().unwrap();
    let profile = Profile::new("http://kiln.test/ca/int.der", "http://kiln.test/ca/crl");
    let signer = Arc::new(fixtures::signer_in(dir.path(), profile, Default::default()).await);
    let store = signer.store.clone();
    let mut lost_the_claim = 0;
    for i in 0..ORDERS {
        let id = format!("twice{i}");
        fixtures::order_at_sign_precert(&store, &id).await;
        let before = PRECERT_BUILDS.load(Ordering::SeqCst);
        let job = Job::SignPrecert {
            order_id: id.clone(),
        };
        let deliver = |attempt| {
            let (signer, job) = (signer.clone(), job.clone());
            tokio::spawn(async move { signer.handle(&job, attempt).await })
        };
        let (a, b) = (deliver(1), deliver(2));
        let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
        let submit_ct = [Job::SubmitCt {
            order_id: id.clone(),
        }];
        // The loser returns nothing if it lost the claim, or re-emits the
        // order's next job if it read the order after the winner stored
        // (invariant 2): either way, it signed nothing (below).
        let outcomes = [&a, &b];
        assert!(
            outcomes.iter().all(|r| r.is_empty() || **r == submit_ct)
                && outcomes.iter().any(|r| **r == submit_ct),
            "order {id}: {a:?} {b:?}"
        );
        if a.is_empty() || b.is_empty() {
            lost_the_claim += 1;
        }
        assert_eq!(
            PRECERT_BUILDS.load(Ordering::SeqCst) - before,
            1,
            "order {id}: one signature; the loser of the claim signs nothing"
        );
        let certs = store.certificates_for_order(&id).await.unwrap();
        assert_eq!(certs.len(), 1, "order {id}: one serial: {certs:#?}");
        let cert = &certs[0];
        assert_eq!(cert.state, CertificateState::Precert);
        let precert = cert
            .precert_der
            .as_deref()
            .expect("the precertificate is stored");
        assert_eq!(serial_of(precert), cert.serial);
        let order = store.order(&id).await.unwrap().unwrap();
        assert_eq!(order.step, Some(FinalizeStep::SubmitCt));
        assert_eq!(order.certificate_serial.as_deref(), Some(&*cert.serial));
        // A third delivery, late: the order is past the step.
        assert_eq!(signer.handle(&job, 3).await.unwrap(), submit_ct);
        assert_eq!(PRECERT_BUILDS.load(Ordering::SeqCst) - before, 1);
    }
    println!(
        "{lost_the_claim} of {ORDERS} losers returned nothing (claim lost or held); the rest re-emitted SubmitCt"
    );
}
