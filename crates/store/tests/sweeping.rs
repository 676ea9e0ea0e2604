//! Queries over work in flight: overdue orders and challenges, the
//! sweeper's gauges, finished orders and their latencies.

#[macro_use]
mod common;

use common::{issued_order, make_ready, pending_order, processing_order};
use domain::{FinalizeStep, OrderStatus};
use store::{Store, now_ms};

on_both_backends!(
    processing_orders_are_counted_with_those_past_a_deadline,
    an_overdue_order_is_found_until_its_deadline_is_extended,
    an_overdue_challenge_is_found_until_its_deadline_is_extended,
    finished_orders_are_read_back_with_their_latency,
);

async fn processing_orders_are_counted_with_those_past_a_deadline(store: Store) {
    pending_order(&store, "o1", &["a.kiln.test"]).await;
    make_ready(&store, "o1", 1).await;
    let now = now_ms();
    assert_eq!(
        store.processing_counts(now).await.unwrap(),
        Default::default()
    );
    assert!(
        store
            .begin_finalize("o1", b"csr", now, now + 1000, now + 60_000, None)
            .await
            .unwrap()
    );
    let counts = store.processing_counts(now).await.unwrap();
    assert_eq!(
        (
            counts.processing,
            counts.past_step_deadline,
            counts.past_finalize_deadline
        ),
        (1, 0, 0)
    );
    let later = store.processing_counts(now + 2000).await.unwrap();
    assert_eq!((later.processing, later.past_step_deadline), (1, 1));
    assert_eq!(later.past_finalize_deadline, 0);
    let much_later = store.processing_counts(now + 60_001).await.unwrap();
    assert_eq!(much_later.past_finalize_deadline, 1);
    assert!(
        store
            .fail_order("o1", &domain::Problem::internal())
            .await
            .unwrap()
    );
    assert_eq!(store.processing_counts(now).await.unwrap().processing, 0);
}

async fn an_overdue_order_is_found_until_its_deadline_is_extended(store: Store) {
    let now = now_ms();
    processing_order(&store, "o2", now, now - 1).await;
    assert_eq!(
        store.overdue_orders(now_ms(), 10).await.unwrap()[0].id,
        "o2"
    );
    assert!(
        !store
            .extend_step_deadline("o2", FinalizeStep::SignPrecert, now_ms() + 60_000)
            .await
            .unwrap(),
        "not at that step"
    );
    assert!(
        store
            .extend_step_deadline("o2", FinalizeStep::CheckCaa, now_ms() + 60_000)
            .await
            .unwrap()
    );
    assert!(store.overdue_orders(now_ms(), 10).await.unwrap().is_empty());
}

async fn an_overdue_challenge_is_found_until_its_deadline_is_extended(store: Store) {
    pending_order(&store, "o3", &["d.kiln.test"]).await;
    store.start_challenge("o3-c0", now_ms() - 1).await.unwrap();
    assert_eq!(
        store.overdue_challenges(now_ms(), 10).await.unwrap()[0].id,
        "o3-c0"
    );
    assert!(
        store
            .extend_challenge_deadline("o3-c0", now_ms() + 60_000)
            .await
            .unwrap()
    );
    assert!(
        store
            .overdue_challenges(now_ms(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .finish_challenge("o3-c0", Ok(()), now_ms())
        .await
        .unwrap();
    assert!(
        !store
            .extend_challenge_deadline("o3-c0", now_ms() + 60_000)
            .await
            .unwrap(),
        "no longer processing"
    );
}

async fn finished_orders_are_read_back_with_their_latency(store: Store) {
    let now = now_ms();
    issued_order(&store, "o1", "01ab", now).await;
    let t = store.order("o1").await.unwrap().unwrap().timeline;
    let latencies = store.recent_finalize_latencies(10).await.unwrap();
    assert_eq!(latencies.len(), 1);
    assert!(latencies[0] >= 0);
    assert_eq!(Some(latencies[0]), t.completed_at.map(|at| at - now));
    let completed = store.completed_since(now - 1, 10).await.unwrap();
    assert_eq!(completed.len(), 1);
    assert_eq!(
        (completed[0].id.as_str(), completed[0].status),
        ("o1", OrderStatus::Valid)
    );
    assert_eq!(completed[0].processing_since, now);
    assert_eq!(Some(completed[0].completed_at), t.completed_at);
    assert!(
        store
            .completed_since(completed[0].completed_at, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.processing_counts(now).await.unwrap().processing, 0);
    // A failed order is completed too, but has no latency of a valid one.
    processing_order(&store, "o2", now, now + 1000).await;
    assert!(
        store
            .fail_order("o2", &domain::Problem::internal())
            .await
            .unwrap()
    );
    let completed = store.completed_since(now - 1, 10).await.unwrap();
    let statuses: Vec<_> = completed.iter().map(|c| c.status).collect();
    assert!(statuses.contains(&OrderStatus::Invalid), "{completed:?}");
    assert_eq!(store.recent_finalize_latencies(10).await.unwrap().len(), 1);
}
