//! One sweep against SQLite and the in-process queue: an order stuck at a
//! step gets that step's job again; one past its finalize deadline ends
//! `invalid` instead.

use domain::{
    AccountStatus, AuthzStatus, ChallengeStatus, ChallengeType, FinalizeStep, Identifier,
    OrderStatus,
};
use proto::Job;
use queue::{MemoryQueue, Queue};
use std::sync::Arc;
use std::time::Duration;
use store::{Account, Authz, Challenge, Order, Store, now_ms};
use sweeper::Sweeper;

async fn store(dir: &tempfile::TempDir) -> Store {
    let url = format!("sqlite://{}", dir.path().join("sweep.db").display());
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let account = Account {
        id: "acct".into(),
        key_thumbprint: "thumb".into(),
        jwk: "{}".into(),
        contact: vec![],
        status: AccountStatus::Valid,
        created_at: now_ms(),
    };
    store.insert_account(&account).await.unwrap();
    store
}

/// A one-name order `id`, finalized with its step and the whole
/// finalization due at the given times.
async fn finalizing(store: &Store, id: &str, step_deadline: i64, finalize_deadline: i64) {
    let now = now_ms();
    let order = Order {
        id: id.into(),
        account_id: "acct".into(),
        status: OrderStatus::Pending,
        step: None,
        identifiers: vec![Identifier::dns("kiln.test")],
        not_before: None,
        not_after: None,
        expires_at: now + 3_600_000,
        created_at: now,
        csr: None,
        processing_since: None,
        step_deadline: None,
        finalize_deadline: None,
        error: None,
        certificate_serial: None,
        timeline: Default::default(),
        replaces: None,
        profile: Default::default(),
    };
    let authz = Authz {
        id: format!("{id}-a"),
        order_id: id.into(),
        account_id: "acct".into(),
        identifier: "kiln.test".into(),
        wildcard: false,
        status: AuthzStatus::Pending,
        expires_at: now + 3_600_000,
        validated_at: None,
    };
    let challenge = Challenge {
        id: format!("{id}-c"),
        authz_id: authz.id.clone(),
        kind: ChallengeType::Http01,
        token: "token".into(),
        status: ChallengeStatus::Pending,
        validated_at: None,
        error: None,
    };
    store
        .insert_order(&order, &[(authz, vec![challenge.clone()])])
        .await
        .unwrap();
    assert!(
        store
            .start_challenge(&challenge.id, now + 60_000)
            .await
            .unwrap()
    );
    assert!(
        store
            .finish_challenge(&challenge.id, Ok(()), now)
            .await
            .unwrap()
    );
    assert!(
        store
            .begin_finalize(id, b"csr", now, step_deadline, finalize_deadline, None)
            .await
            .unwrap()
    );
}

async fn next_job(queue: &MemoryQueue, name: &str) -> Job {
    let mut consumer = queue.consume(name, 1).await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("a job")
        .expect("open")
        .unwrap();
    delivery.message.unwrap().envelope.job
}

#[tokio::test]
async fn an_overdue_step_is_driven_again_and_an_overdue_order_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let queue = MemoryQueue::new();
    let sweeper = Sweeper {
        store: store.clone(),
        queue: Arc::new(queue.clone()),
        step_timeout: Duration::from_secs(60),
    };
    let now = now_ms();
    finalizing(&store, "stuck", now - 1, now + 60_000).await;
    finalizing(&store, "later", now + 60_000, now + 60_000).await;
    finalizing(&store, "expired", now - 1, now - 1).await;
    assert!(
        store
            .advance_step(
                "stuck",
                FinalizeStep::CheckCaa,
                FinalizeStep::SignPrecert,
                now - 1
            )
            .await
            .unwrap()
    );

    assert_eq!(sweeper.sweep(now).await.unwrap(), 1);
    assert_eq!(
        next_job(&queue, proto::queues::SIGNER).await,
        Job::SignPrecert {
            order_id: "stuck".into()
        }
    );
    assert_eq!(queue.depth(proto::queues::CAA_CHECKER), 0, "nothing else");
    let stuck = store.order("stuck").await.unwrap().unwrap();
    assert!(stuck.step_deadline.unwrap() > now, "its deadline moved on");
    let expired = store.order("expired").await.unwrap().unwrap();
    assert_eq!(expired.status, OrderStatus::Invalid);
    assert_eq!(
        store.order("later").await.unwrap().unwrap().status,
        OrderStatus::Processing
    );
    assert_eq!(sweeper.sweep(now).await.unwrap(), 0, "once per deadline");
}
