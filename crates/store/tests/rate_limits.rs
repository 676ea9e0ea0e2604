//! Rate-limit events: recorded, counted per bucket over a window, pruned;
//! a failed validation counted by the transition itself; pending
//! authorizations counted per account.

#[macro_use]
mod common;

use common::{ACCOUNT, pending_order};
use domain::{Problem, ProblemKind};
use store::rate_limits::{failed_validation_bucket, limit};
use store::{Store, now_ms};

on_both_backends!(
    events_are_counted_per_bucket_within_the_window_newest_first,
    a_failed_validation_is_counted_for_its_account_and_name,
    pending_authorizations_are_counted_per_account,
);

async fn events_are_counted_per_bucket_within_the_window_newest_first(store: Store) {
    let l = limit::NEW_ORDERS;
    for at in [100, 200, 300] {
        store
            .record_rate_limit_events(l, &["acct-a".into()], at)
            .await
            .unwrap();
    }
    store
        .record_rate_limit_events(l, &["acct-b".into(), "acct-c".into()], 250)
        .await
        .unwrap();
    let recent = |bucket: &'static str, since: i64, max: u32| {
        let store = store.clone();
        async move {
            store
                .recent_rate_limit_events(l, bucket, since, max)
                .await
                .unwrap()
        }
    };
    assert_eq!(recent("acct-a", 0, 10).await, vec![300, 200, 100]);
    assert_eq!(recent("acct-a", 0, 2).await, vec![300, 200], "at most max");
    assert_eq!(recent("acct-a", 150, 10).await, vec![300, 200], "window");
    assert_eq!(recent("acct-b", 0, 10).await, vec![250]);
    let other_limit = store
        .recent_rate_limit_events(limit::NEW_ACCOUNTS, "acct-a", 0, 10)
        .await
        .unwrap();
    assert!(other_limit.is_empty(), "limits do not share counts");
    assert_eq!(store.prune_rate_limit_events(200).await.unwrap(), 2);
    assert_eq!(recent("acct-a", 0, 10).await, vec![300]);
    assert_eq!(recent("acct-b", 0, 10).await, vec![250]);
}

async fn a_failed_validation_is_counted_for_its_account_and_name(store: Store) {
    pending_order(&store, "o1", &["fail.kiln.test", "ok.kiln.test"]).await;
    let now = now_ms();
    let bucket = failed_validation_bucket(ACCOUNT, "fail.kiln.test");
    let problem = Problem::new(ProblemKind::Unauthorized, "wrong key authorization");
    assert!(store.start_challenge("o1-c0", now + 1000).await.unwrap());
    assert!(
        store
            .finish_challenge("o1-c0", Err(&problem), now)
            .await
            .unwrap()
    );
    assert!(store.start_challenge("o1-c1", now + 1000).await.unwrap());
    assert!(store.finish_challenge("o1-c1", Ok(()), now).await.unwrap());
    let failures = |bucket: String| {
        let store = store.clone();
        async move {
            store
                .recent_rate_limit_events(limit::FAILED_VALIDATIONS, &bucket, now - 1, 10)
                .await
                .unwrap()
        }
    };
    assert_eq!(failures(bucket.clone()).await, vec![now]);
    let ok = failed_validation_bucket(ACCOUNT, "ok.kiln.test");
    assert!(failures(ok).await.is_empty(), "a success is not counted");
    // A redelivered result finds the challenge no longer processing: no
    // second count.
    assert!(
        !store
            .finish_challenge("o1-c0", Err(&problem), now)
            .await
            .unwrap()
    );
    assert_eq!(failures(bucket).await.len(), 1);
}

async fn pending_authorizations_are_counted_per_account(store: Store) {
    pending_order(&store, "o1", &["a.kiln.test", "b.kiln.test"]).await;
    pending_order(&store, "o2", &["c.kiln.test"]).await;
    let now = now_ms();
    assert_eq!(store.pending_authz_count(ACCOUNT, now).await.unwrap(), 3);
    assert!(store.start_challenge("o2-c0", now + 1000).await.unwrap());
    assert!(store.finish_challenge("o2-c0", Ok(()), now).await.unwrap());
    assert_eq!(store.pending_authz_count(ACCOUNT, now).await.unwrap(), 2);
    assert_eq!(
        store
            .pending_authz_count("someone-else", now)
            .await
            .unwrap(),
        0
    );
    let later = now + 3_600_001; // past the builders' authorization expiry
    assert_eq!(store.pending_authz_count(ACCOUNT, later).await.unwrap(), 0);
}
