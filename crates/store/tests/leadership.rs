//! Leadership: on PostgreSQL one process at a time holds it, and it passes
//! on when the leader's connection goes; SQLite serves one process, which
//! always leads.

#[macro_use]
mod common;

use store::{Backend, Store};

/// Any key will do; the sweeper's is its own.
const KEY: i64 = 42;

on_both_backends!(url: one_process_leads_at_a_time);

async fn one_process_leads_at_a_time(store: Store, url: String) {
    let mut leader = store.try_leadership(KEY).await.unwrap().expect("leads");
    assert!(leader.still_held().await);
    // Another process, with a pool of its own.
    let other = Store::connect(&url).await.unwrap();
    let contender = other.try_leadership(KEY).await.unwrap();
    match store.backend() {
        Backend::Sqlite => {
            assert!(contender.is_some(), "SQLite: the one process always leads")
        }
        Backend::Postgres => {
            assert!(contender.is_none(), "taken");
            assert!(
                other.try_leadership(KEY + 1).await.unwrap().is_some(),
                "another key is another leadership"
            );
            assert!(leader.still_held().await);
            // The leader's connection goes (its process dies): the lock with
            // it (only in this test's database).
            other
                .execute_admin(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks
                     WHERE locktype = 'advisory'
                       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                )
                .await
                .unwrap();
            assert!(!leader.still_held().await);
            drop(leader);
            assert!(other.try_leadership(KEY).await.unwrap().is_some());
        }
    }
    other.close().await;
}

/// Leadership of `KEY`, tried every 20 ms for 2 s: a lock whose connection
/// was closed is released once the server notices.
async fn leadership_within_two_seconds(store: &Store) -> Option<store::Leadership> {
    for _ in 0..100 {
        if let Some(held) = store.try_leadership(KEY).await.unwrap() {
            return Some(held);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    None
}

on_both_backends!(url: dropping_leadership_gives_it_up);

async fn dropping_leadership_gives_it_up(store: Store, url: String) {
    let leader = store.try_leadership(KEY).await.unwrap().expect("leads");
    drop(leader);
    let other = Store::connect(&url).await.unwrap();
    // The lock's connection is closed, not returned to the pool still
    // holding it; the server notices within moments.
    let passed_on = leadership_within_two_seconds(&other).await;
    assert!(passed_on.is_some(), "a dropped leadership passes on");
    drop(passed_on);
    other.close().await;
}

on_both_backends!(url: shared_holders_and_a_leader_exclude_each_other);

/// The api role: any number of shared holders, or one exclusive one.
async fn shared_holders_and_a_leader_exclude_each_other(store: Store, url: String) {
    let other = Store::connect(&url).await.unwrap();
    let first = store.try_shared_lock(KEY).await.unwrap().expect("shared");
    let second = other.try_shared_lock(KEY).await.unwrap();
    assert!(second.is_some(), "shared holders coexist");
    let leader = other.try_leadership(KEY).await.unwrap();
    match store.backend() {
        Backend::Sqlite => assert!(leader.is_some(), "SQLite: the one process always holds it"),
        Backend::Postgres => {
            assert!(leader.is_none(), "no leader beside shared holders");
            drop((first, second));
            let leader = leadership_within_two_seconds(&other).await;
            assert!(leader.is_some(), "the shared holders are gone");
            assert!(
                store.try_shared_lock(KEY).await.unwrap().is_none(),
                "no shared holder beside a leader"
            );
        }
    }
    other.close().await;
}
