//! Finished-order notifications: a subscriber hears of every order that
//! becomes `valid` or `invalid`, in its own process and (PostgreSQL) from
//! every other.

#[macro_use]
mod common;

use common::{issued_order, processing_order};
use std::time::Duration;
use store::{Backend, Store, now_ms};
use tokio::sync::broadcast;

on_both_backends!(url: finished_orders_are_announced);

/// Waits for `order_id` among the announced ids (others may come first).
async fn heard(done: &mut broadcast::Receiver<String>, order_id: &str, wait: Duration) -> bool {
    let until = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(until, done.recv()).await {
            Ok(Ok(id)) if id == order_id => return true,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => return false,
        }
    }
}

async fn finished_orders_are_announced(store: Store, url: String) {
    const WAIT: Duration = Duration::from_secs(10);
    let now = now_ms();
    let mut done = store.subscribe_done().await;
    processing_order(&store, "failed", now, now + 60_000).await;
    assert!(
        store
            .fail_order("failed", &domain::Problem::internal())
            .await
            .unwrap()
    );
    assert!(heard(&mut done, "failed", WAIT).await, "a failed order");
    issued_order(&store, "issued", "01", now).await;
    assert!(heard(&mut done, "issued", WAIT).await, "an issued order");

    if store.backend() == Backend::Postgres {
        // Another process hears of it through LISTEN. Its listener starts
        // with the first subscription and may miss what finishes before it
        // is up, so finish orders until one is heard.
        let other = Store::connect(&url).await.unwrap();
        let mut elsewhere = other.subscribe_done().await;
        let mut was_heard = false;
        for i in 0..20 {
            let id = format!("elsewhere{i}");
            processing_order(&store, &id, now, now + 60_000).await;
            assert!(
                store
                    .fail_order(&id, &domain::Problem::internal())
                    .await
                    .unwrap()
            );
            if heard(&mut elsewhere, &id, Duration::from_millis(500)).await {
                was_heard = true;
                break;
            }
        }
        assert!(was_heard, "another process hears of finished orders");
        other.close().await;
    }
}
