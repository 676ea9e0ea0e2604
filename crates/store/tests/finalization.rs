//! The finalization pipeline's transitions: every one happens once, in
//! order, and intent is stored before each irreversible act.

#[macro_use]
mod common;

use common::{ACCOUNT, make_ready, new_certificate, pending_order, processing_order};
use domain::{FinalizeStep, OrderStatus, Problem, ProblemKind};
use store::{
    BeginFinalize, CertificateState, FinalizeObservation, NewCertificate, Store, StoreError, now_ms,
};

on_both_backends!(
    exactly_one_finalize_wins_and_keeps_its_trace_id,
    the_winning_finalize_records_its_observation_and_the_loser_none,
    an_expired_order_is_not_finalized,
    an_order_is_issued_step_by_step,
    a_restart_after_final_signing_abandons_the_serial,
    failing_stores_the_problem_once,
    giving_up_fails_the_order_as_internal,
);

async fn exactly_one_finalize_wins_and_keeps_its_trace_id(store: Store) {
    pending_order(&store, "o1", &["a.kiln.test", "b.kiln.test"]).await;
    make_ready(&store, "o1", 2).await;
    let now = now_ms();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    assert!(
        store
            .begin_finalize("o1", b"csr", now, now + 1000, now + 60_000, Some(trace))
            .await
            .unwrap()
    );
    assert!(
        !store
            .begin_finalize(
                "o1",
                b"csr",
                now,
                now + 1000,
                now + 60_000,
                Some("00000000000000000000000000000001")
            )
            .await
            .unwrap()
    );
    let o1 = store.order("o1").await.unwrap().unwrap();
    assert_eq!(
        (o1.status, o1.step),
        (OrderStatus::Processing, Some(FinalizeStep::CheckCaa))
    );
    assert_eq!(o1.csr.as_deref(), Some(&b"csr"[..]));
    assert_eq!(o1.timeline.trace_id.as_deref(), Some(trace), "the winner's");
    assert_eq!(
        (o1.processing_since, o1.step_deadline, o1.finalize_deadline),
        (Some(now), Some(now + 1000), Some(now + 60_000))
    );
}

/// An async finalize's compatibility observation commits with its
/// transition: the loser of two concurrent finalizes writes neither.
async fn the_winning_finalize_records_its_observation_and_the_loser_none(store: Store) {
    pending_order(&store, "o1", &["a.kiln.test"]).await;
    make_ready(&store, "o1", 1).await;
    let now = now_ms();
    let observation = |mode: &str| FinalizeObservation {
        order_id: "o1".into(),
        account_id: ACCOUNT.into(),
        user_agent: "test-client/1.0".into(),
        client_product: "test-client".into(),
        client_version: "1.0".into(),
        mode: mode.into(),
        finalized_at: now,
        first_poll_at: None,
        polls: 0,
        downloaded_at: None,
    };
    let begin = || BeginFinalize {
        order_id: "o1",
        csr_der: b"csr",
        now,
        step_deadline: now + 1000,
        finalize_deadline: now + 60_000,
        trace_id: None,
    };
    let winner = observation("async");
    assert!(
        store
            .begin_finalize_observed(begin(), Some(&winner))
            .await
            .unwrap()
    );
    let loser = observation("loser");
    assert!(
        !store
            .begin_finalize_observed(begin(), Some(&loser))
            .await
            .unwrap()
    );
    assert_eq!(store.finalize_observations(0).await.unwrap(), vec![winner]);
}

async fn an_expired_order_is_not_finalized(store: Store) {
    pending_order(&store, "o1", &["a.kiln.test"]).await;
    make_ready(&store, "o1", 1).await;
    let after_expiry = store.order("o1").await.unwrap().unwrap().expires_at;
    assert!(
        !store
            .begin_finalize("o1", b"csr", after_expiry, 0, 0, None)
            .await
            .unwrap()
    );
    assert_eq!(
        store.order("o1").await.unwrap().unwrap().status,
        OrderStatus::Ready
    );
}

async fn an_order_is_issued_step_by_step(store: Store) {
    let now = now_ms();
    processing_order(&store, "o1", now, now + 1000).await;

    // Steps advance by compare-and-set.
    assert!(
        store
            .advance_step(
                "o1",
                FinalizeStep::CheckCaa,
                FinalizeStep::SignPrecert,
                now + 1000
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .advance_step(
                "o1",
                FinalizeStep::CheckCaa,
                FinalizeStep::SignPrecert,
                now + 1000
            )
            .await
            .unwrap()
    );

    // The serial claims the step before signing: once, and never reused.
    let cert = NewCertificate {
        serial: "01ab".into(),
        order_id: "o1".into(),
        account_id: ACCOUNT.into(),
        not_before: now,
        not_after: now + 1000,
        issuer_id: common::issuer().id,
        key: store::KeyDigest::of_spki(b"the CSR's key"),
        crl_shard: 0,
    };
    assert!(
        store
            .claim_precert(&cert, None, now, now + 1000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_precert(&cert, None, now, now + 1000)
            .await
            .unwrap(),
        "claimed once"
    );
    processing_order(&store, "o9", now, now + 1000).await;
    store
        .advance_step("o9", FinalizeStep::CheckCaa, FinalizeStep::SignPrecert, now)
        .await
        .unwrap();
    let same_serial = NewCertificate {
        order_id: "o9".into(),
        ..cert.clone()
    };
    assert!(matches!(
        store
            .claim_precert(&same_serial, None, now, now + 1000)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let o9 = store.order("o9").await.unwrap().unwrap();
    assert_eq!(
        o9.certificate_serial, None,
        "a refused claim claims nothing"
    );
    let reserved = store.certificate("01ab").await.unwrap().unwrap();
    assert_eq!(reserved.state, CertificateState::PrecertSigning);
    assert_eq!(
        (reserved.order_id.as_str(), reserved.created_at),
        ("o1", now)
    );
    assert_eq!(reserved.precert_der, None);
    assert!(
        store
            .store_precert("o1", "01ab", b"precert", now + 1000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .store_precert("o1", "01ab", b"precert", now + 1000)
            .await
            .unwrap()
    );
    assert!(
        !store.begin_final_signing("01ab").await.unwrap(),
        "no SCTs yet"
    );
    assert!(
        store
            .store_scts("o1", "01ab", b"scts", now + 1000)
            .await
            .unwrap()
    );
    assert!(store.begin_final_signing("01ab").await.unwrap());
    assert!(
        !store.begin_final_signing("01ab").await.unwrap(),
        "signing begins once"
    );
    assert!(store.store_final("o1", "01ab", b"final").await.unwrap());
    assert!(
        !store.store_final("o1", "01ab", b"final").await.unwrap(),
        "issued once"
    );
    let o1 = store.order("o1").await.unwrap().unwrap();
    assert_eq!((o1.status, o1.step), (OrderStatus::Valid, None));
    assert_eq!(o1.certificate_serial.as_deref(), Some("01ab"));
    let t = &o1.timeline;
    let times = [t.caa_checked_at, t.precert_at, t.scts_at, t.completed_at];
    assert!(
        times.iter().all(Option::is_some),
        "every step is timed: {t:?}"
    );
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in order: {t:?}");
    let c = store.certificate("01ab").await.unwrap().unwrap();
    assert_eq!(c.state, CertificateState::Issued);
    assert_eq!(c.final_der.as_deref(), Some(&b"final"[..]));
    assert_eq!(c.precert_der.as_deref(), Some(&b"precert"[..]));
    assert_eq!(c.sct_list.as_deref(), Some(&b"scts"[..]));
}

/// A crash after "final signing begun": the serial is abandoned, its
/// precertificate kept, and the order goes back for a new serial.
async fn a_restart_after_final_signing_abandons_the_serial(store: Store) {
    let now = now_ms();
    processing_order(&store, "o2", now, now + 60_000).await;
    store
        .advance_step("o2", FinalizeStep::CheckCaa, FinalizeStep::SignPrecert, now)
        .await
        .unwrap();
    assert!(
        store
            .claim_precert(&new_certificate("02", "o2"), None, now, now)
            .await
            .unwrap()
    );
    assert!(store.store_precert("o2", "02", b"p2", now).await.unwrap());
    store.store_scts("o2", "02", b"s2", now).await.unwrap();
    store.begin_final_signing("02").await.unwrap();
    assert!(store.restart_issuance("o2", "02", now).await.unwrap());
    assert!(
        !store.restart_issuance("o2", "02", now).await.unwrap(),
        "restarted once"
    );
    let o2 = store.order("o2").await.unwrap().unwrap();
    assert_eq!(
        (o2.step, o2.certificate_serial),
        (Some(FinalizeStep::SignPrecert), None)
    );
    let c2 = store.certificate("02").await.unwrap().unwrap();
    assert_eq!(c2.state, CertificateState::Abandoned);
    assert_eq!(c2.precert_der.as_deref(), Some(&b"p2"[..]));
    assert!(
        !store.store_final("o2", "02", b"late").await.unwrap(),
        "abandoned serial never issues"
    );
    // The order starts over with a new serial.
    assert!(
        store
            .claim_precert(&new_certificate("03", "o2"), None, now, now)
            .await
            .unwrap()
    );
    assert!(store.store_precert("o2", "03", b"p3", now).await.unwrap());
}

async fn failing_stores_the_problem_once(store: Store) {
    let now = now_ms();
    processing_order(&store, "o2", now, now + 1000).await;
    let problem = Problem::new(ProblemKind::Caa, "forbidden");
    assert!(store.fail_order("o2", &problem).await.unwrap());
    assert!(!store.fail_order("o2", &problem).await.unwrap());
    let o2 = store.order("o2").await.unwrap().unwrap();
    assert_eq!((o2.status, o2.error), (OrderStatus::Invalid, Some(problem)));
    assert_eq!((o2.step, o2.step_deadline), (None, None));
    assert!(o2.timeline.completed_at.is_some());
}

async fn giving_up_fails_the_order_as_internal(store: Store) {
    let now = now_ms();
    processing_order(&store, "o5", now, now + 1000).await;
    store.give_up_order("o5", "a bug").await;
    let o5 = store.order("o5").await.unwrap().unwrap();
    assert_eq!(
        (o5.status, o5.error),
        (OrderStatus::Invalid, Some(Problem::internal()))
    );
    // An order already finished keeps its outcome.
    let done = Problem::new(ProblemKind::Caa, "forbidden");
    processing_order(&store, "o6", now, now + 1000).await;
    assert!(store.fail_order("o6", &done).await.unwrap());
    store.give_up_order("o6", "too late").await;
    assert_eq!(store.order("o6").await.unwrap().unwrap().error, Some(done));
}
