//! Dead letters as recorded by the stage runner, and as `kiln audit`
//! reads them: by subject, by a page's range of order ids, and counted,
//! with those naming nothing that exists told apart.

#[macro_use]
mod common;

use store::{DeadLetterRecord, Store};

on_both_backends!(dead_letters_are_recorded_and_read_back);

fn letter(job: &str, subject: Option<&str>, dead_at: i64) -> DeadLetterRecord {
    DeadLetterRecord {
        stage: "signer".into(),
        job: job.into(),
        subject_id: subject.map(str::to_string),
        attempt: 8,
        reason: format!("attempts_exhausted: {job}"),
        dead_at,
    }
}

async fn dead_letters_are_recorded_and_read_back(store: Store) {
    common::pending_order(&store, "o1", &["a.test"]).await;
    let first = letter("sign-precert", Some("o1"), 1_000);
    let again = letter("sign-final", Some("o1"), 2_000);
    let poison = letter("check-caa", Some("o-none"), 3_000);
    let unreadable = letter("undecodable", None, 4_000);
    for l in [&first, &again, &poison, &unreadable] {
        store.record_dead_letter(l).await.unwrap();
    }
    assert_eq!(
        store.dead_letters_of("o1").await.unwrap(),
        vec![first.clone(), again.clone()],
        "oldest first"
    );
    assert_eq!(
        store.audit_dead_letters_in("o0", "o1").await.unwrap(),
        vec![first, again],
        "a page's range of order ids"
    );
    assert!(
        store
            .audit_dead_letters_in("o1", "o2")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.audit_dead_letter_counts(i64::MIN).await.unwrap(),
        (4, 2),
        "the poison job and the undecodable body name nothing"
    );
    assert_eq!(store.audit_dead_letter_counts(2_500).await.unwrap(), (2, 2));
}

on_both_backends!(a_database_behind_this_build_says_so);

/// A reader of `dead_letters` (the audit) can tell a database migrated
/// before the table existed from one that has it.
async fn a_database_behind_this_build_says_so(store: Store) {
    assert_eq!(store.migrations_behind().await.unwrap(), None, "migrated");
    store
        .execute_admin(
            "DELETE FROM _sqlx_migrations
             WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)",
        )
        .await
        .unwrap();
    let (applied, known) = store.migrations_behind().await.unwrap().expect("behind");
    assert_eq!(applied + 1, known, "the newest migration is missing");
}
