//! Client-compatibility observations: what a client did after its finalize
//! was answered `processing`.

#[macro_use]
mod common;

use store::{FinalizeObservation, Store, now_ms};

on_both_backends!(a_finalize_is_observed_through_polls_and_download);

async fn a_finalize_is_observed_through_polls_and_download(store: Store) {
    let now = now_ms();
    let obs = FinalizeObservation {
        order_id: "o1".into(),
        account_id: "acct1".into(),
        user_agent: "certbot/5.0".into(),
        client_product: "certbot".into(),
        client_version: "5.0".into(),
        mode: "async".into(),
        finalized_at: now,
        first_poll_at: None,
        polls: 0,
        downloaded_at: None,
    };
    store.record_finalize_observation(&obs).await.unwrap();
    store.record_finalize_observation(&obs).await.unwrap(); // idempotent
    store.observe_poll("o1", now + 5).await.unwrap();
    store.observe_poll("o1", now + 9).await.unwrap();
    store.observe_download("o1", now + 10).await.unwrap();
    store.observe_download("o1", now + 20).await.unwrap(); // the first counts
    store.observe_poll("unobserved", now).await.unwrap();
    store.observe_download("unobserved", now).await.unwrap();
    assert_eq!(store.polls_after_finalize("o1").await.unwrap(), 2);
    assert_eq!(store.polls_after_finalize("unobserved").await.unwrap(), 0);
    let seen = store.finalize_observations(now).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].polls, seen[0].first_poll_at, seen[0].downloaded_at),
        (2, Some(now + 5), Some(now + 10))
    );
    assert_eq!(
        seen[0],
        FinalizeObservation {
            first_poll_at: Some(now + 5),
            polls: 2,
            downloaded_at: Some(now + 10),
            ..obs
        }
    );
    assert!(
        store
            .finalize_observations(now + 1)
            .await
            .unwrap()
            .is_empty()
    );
}
