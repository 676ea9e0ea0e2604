//! The MPIC records: a corroboration begun afresh per attempt, one finding
//! per perspective (the first stands), none after the verdict, and the
//! verdict decided once.

#[macro_use]
mod common;

use store::{PerspectiveResult, Store};

on_both_backends!(
    findings_are_recorded_once_and_only_while_undecided,
    a_new_attempt_starts_afresh,
);

fn finding(perspective: &str, result: &str) -> PerspectiveResult {
    PerspectiveResult {
        perspective: perspective.into(),
        region: Some("ARIN".into()),
        result: result.into(),
        detail: if result == "corroborated" {
            String::new()
        } else {
            "saw x".into()
        },
        checked_at: 5,
    }
}

async fn findings_are_recorded_once_and_only_while_undecided(store: Store) {
    // Nothing begun: nothing recorded.
    assert!(
        !store
            .record_perspective_result("c1", &finding("a", "corroborated"))
            .await
            .unwrap()
    );
    store.begin_corroboration("c1", 3, 1_000, 1).await.unwrap();
    assert!(
        store
            .record_perspective_result("c1", &finding("a", "corroborated"))
            .await
            .unwrap()
    );
    // A redelivery does not overwrite the first finding.
    assert!(
        !store
            .record_perspective_result("c1", &finding("a", "disagreed"))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_perspective_result("c1", &finding("b", "disagreed"))
            .await
            .unwrap()
    );

    let record = store.corroboration("c1").await.unwrap().unwrap();
    assert_eq!(
        (record.remotes, record.deadline, record.verdict),
        (3, 1_000, None)
    );
    assert_eq!(
        record.results,
        [finding("a", "corroborated"), finding("b", "disagreed")]
    );

    assert!(
        store
            .decide_corroboration("c1", "1/3", false, 7)
            .await
            .unwrap()
    );
    assert!(
        !store
            .decide_corroboration("c1", "2/3", true, 8)
            .await
            .unwrap(),
        "decided once"
    );
    assert!(
        !store
            .record_perspective_result("c1", &finding("c", "corroborated"))
            .await
            .unwrap()
    );
    let record = store.corroboration("c1").await.unwrap().unwrap();
    assert_eq!(
        (record.verdict.as_deref(), record.passed),
        (Some("1/3"), Some(false))
    );
    assert_eq!(record.results.len(), 2);
}

async fn a_new_attempt_starts_afresh(store: Store) {
    store.begin_corroboration("c2", 2, 1_000, 1).await.unwrap();
    store
        .record_perspective_result("c2", &finding("a", "corroborated"))
        .await
        .unwrap();
    store
        .decide_corroboration("c2", "1/2", true, 3)
        .await
        .unwrap();
    // BR 3.2.2.9: a retry must not lean on earlier corroborations.
    store.begin_corroboration("c2", 2, 2_000, 4).await.unwrap();
    let record = store.corroboration("c2").await.unwrap().unwrap();
    assert_eq!(
        (record.deadline, record.verdict, record.results.len()),
        (2_000, None, 0)
    );
}
