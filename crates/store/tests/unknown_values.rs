//! A rolling deploy (issue 16): a newer replica stores a step or a
//! challenge type this build does not know. Every read of such a row
//! succeeds (no 500 on the order or authorization GET), the order reads as
//! processing in a step of its own, no job is re-driven for it, and the
//! transitions of this build's stages leave it alone.

#[macro_use]
mod common;

use common::{pending_order, processing_order};
use domain::{ChallengeType, FinalizeStep, OrderStatus};
use store::{Store, now_ms};

on_both_backends!(
    an_order_in_a_step_this_build_does_not_know_is_read_and_left_alone,
    a_challenge_of_a_type_this_build_does_not_know_is_read,
);

async fn an_order_in_a_step_this_build_does_not_know_is_read_and_left_alone(store: Store) {
    let now = now_ms();
    processing_order(&store, "o1", now, now - 1).await;
    store
        .execute_admin("UPDATE orders SET step = 'some-step-added-later' WHERE id = 'o1'")
        .await
        .unwrap();
    let order = store.order("o1").await.unwrap().unwrap();
    assert_eq!(
        (order.status, order.step),
        (OrderStatus::Processing, Some(FinalizeStep::Unknown))
    );
    assert_eq!(
        order.job_for_current_step(),
        None,
        "no stage of ours runs it"
    );
    let (with_authzs, _) = store.order_with_authzs("o1").await.unwrap().unwrap();
    assert_eq!(with_authzs.step, Some(FinalizeStep::Unknown));
    // The sweeper's read of overdue orders does not fail on it.
    let overdue = store.overdue_orders(now + 1, 10).await.unwrap();
    assert_eq!(overdue.len(), 1);
    assert_eq!(overdue[0].job_for_current_step(), None);
    // Every stage's compare-and-set is on a step it knows: none matches.
    for step in [
        FinalizeStep::CheckCaa,
        FinalizeStep::SignPrecert,
        FinalizeStep::SubmitCt,
        FinalizeStep::SignFinal,
    ] {
        assert!(
            !store
                .advance_step("o1", step, FinalizeStep::SignFinal, now)
                .await
                .unwrap()
        );
        assert!(!store.extend_step_deadline("o1", step, now).await.unwrap());
    }
    let order = store.order("o1").await.unwrap().unwrap();
    assert_eq!(order.step, Some(FinalizeStep::Unknown), "untouched");
}

async fn a_challenge_of_a_type_this_build_does_not_know_is_read(store: Store) {
    pending_order(&store, "o1", &["a.kiln.test"]).await;
    store
        .execute_admin("UPDATE challenges SET kind = 'some-type-added-later' WHERE id = 'o1-c0'")
        .await
        .unwrap();
    let challenge = store.challenge("o1-c0").await.unwrap().unwrap();
    assert_eq!(challenge.kind, ChallengeType::Unknown);
    let (_, challenges) = store.authz_with_challenges("o1-a0").await.unwrap().unwrap();
    assert_eq!(challenges[0].kind, ChallengeType::Unknown);
    let (read, _) = store.challenge_with_authz("o1-c0").await.unwrap().unwrap();
    assert_eq!(read.kind, ChallengeType::Unknown);
}
