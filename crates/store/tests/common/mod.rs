//! What every store test shares: the harness that runs one test on both
//! back ends — whatever SQLite accepts, PostgreSQL must accept the same way,
//! compare-and-set results included — and builders for rows and for orders
//! in a given state.
//!
//! Each run gets a fresh SQLite file or a fresh PostgreSQL database (from
//! KILN_TEST_DATABASE_URL, default the machine's local server), migrated,
//! so tests never see each other's rows and run in parallel.

// Each test file uses some of the builders.
#![allow(dead_code)]

use domain::{
    AccountStatus, AuthzStatus, ChallengeStatus, ChallengeType, FinalizeStep, Identifier,
    OrderStatus,
};
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use store::{Account, Authz, Challenge, Issuer, NewCertificate, Order, Store, now_ms};

/// Runs each `async fn(Store)` named as two tests, `<name>::sqlite` and
/// `<name>::postgres`; after `url:` each `async fn(Store, String)`, which
/// also gets the database URL (to connect as another process would).
macro_rules! on_both_backends {
    (url: $($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test]
            async fn sqlite() {
                crate::common::on_sqlite(super::$test).await
            }
            #[tokio::test]
            async fn postgres() {
                crate::common::on_postgres(super::$test).await
            }
        }
    )+};
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test]
            async fn sqlite() {
                crate::common::on_sqlite(|store, _| super::$test(store)).await
            }
            #[tokio::test]
            async fn postgres() {
                crate::common::on_postgres(|store, _| super::$test(store)).await
            }
        }
    )+};
}

/// Runs `test` on a migrated store in a fresh SQLite file.
pub async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Store, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    store.record_issuer(&issuer()).await.unwrap();
    test(store, url).await;
}

/// Runs `test` on a migrated store in a fresh PostgreSQL database, and drops
/// the database afterwards, also when the test fails.
pub async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(Store, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let admin_url = std::env::var("KILN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let admin = Store::connect(&admin_url)
        .await
        .expect("PostgreSQL must be running (see .ci/run)");
    // Unique per test and run, so parallel or leftover runs never collide.
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let db = format!("kiln_store_{}_{}_{run}", std::process::id(), now_ms());
    admin
        .execute_admin(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let url = match admin_url.rfind('/') {
        Some(i) => format!("{}/{db}", &admin_url[..i]),
        None => panic!("database URL without a database name"),
    };
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    store.record_issuer(&issuer()).await.unwrap();
    // In a task of its own, so a failed assertion still lets the database go.
    let outcome = tokio::spawn(test(store.clone(), url)).await;
    store.close().await;
    admin
        .execute_admin(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .await
        .unwrap();
    admin.close().await;
    if let Err(failed) = outcome {
        std::panic::resume_unwind(failed.into_panic());
    }
}

/// The issuer every test store has recorded, which certificates name.
pub fn issuer() -> Issuer {
    Issuer::new(
        b"test issuer certificate".to_vec(),
        "test chain PEM\n".into(),
    )
}

pub fn account(id: &str) -> Account {
    Account {
        id: id.into(),
        key_thumbprint: format!("thumb-{id}"),
        jwk: "{}".into(),
        contact: vec!["mailto:a@kiln.test".into()],
        status: AccountStatus::Valid,
        created_at: now_ms(),
    }
}

/// A pending order for `names`, each with a pending authorization
/// `{id}-a{i}` and one http-01 challenge `{id}-c{i}`.
pub fn order(id: &str, account: &str, names: &[&str]) -> (Order, Vec<(Authz, Vec<Challenge>)>) {
    let now = now_ms();
    let order = Order {
        id: id.into(),
        account_id: account.into(),
        status: OrderStatus::Pending,
        step: None,
        identifiers: names.iter().map(|n| Identifier::dns(*n)).collect(),
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
    let authzs = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let authz = Authz {
                id: format!("{id}-a{i}"),
                order_id: id.into(),
                account_id: account.into(),
                identifier: n.to_string(),
                wildcard: false,
                status: AuthzStatus::Pending,
                expires_at: now + 3_600_000,
                validated_at: None,
            };
            let challenge = Challenge {
                id: format!("{id}-c{i}"),
                authz_id: authz.id.clone(),
                kind: ChallengeType::Http01,
                token: format!("token{i}"),
                status: ChallengeStatus::Pending,
                validated_at: None,
                error: None,
            };
            (authz, vec![challenge])
        })
        .collect();
    (order, authzs)
}

/// The account every builder's orders belong to.
pub const ACCOUNT: &str = "acct1";

/// Stores [`ACCOUNT`] (once) and a pending order `id` for `names`.
pub async fn pending_order(store: &Store, id: &str, names: &[&str]) -> Order {
    store.insert_account(&account(ACCOUNT)).await.unwrap();
    let (order, authzs) = order(id, ACCOUNT, names);
    store.insert_order(&order, &authzs).await.unwrap();
    order
}

/// Drives an order to `ready` by validating each of its challenges.
pub async fn make_ready(store: &Store, id: &str, n: usize) {
    for i in 0..n {
        let c = format!("{id}-c{i}");
        assert!(store.start_challenge(&c, now_ms() + 1000).await.unwrap());
        assert!(store.finish_challenge(&c, Ok(()), now_ms()).await.unwrap());
    }
}

/// A one-name order `id`, finalized at `now`: processing at `check-caa`,
/// its step due at `step_deadline`.
pub async fn processing_order(store: &Store, id: &str, now: i64, step_deadline: i64) {
    pending_order(store, id, &[&format!("{id}.kiln.test")]).await;
    make_ready(store, id, 1).await;
    assert!(
        store
            .begin_finalize(id, b"csr", now, step_deadline, now + 60_000, None)
            .await
            .unwrap()
    );
}

/// The certificate row a signer would claim `order_id`'s sign-precert with.
pub fn new_certificate(serial: &str, order_id: &str) -> NewCertificate {
    let now = now_ms();
    NewCertificate {
        serial: serial.into(),
        order_id: order_id.into(),
        account_id: ACCOUNT.into(),
        not_before: now,
        not_after: now + 1000,
        issuer_id: issuer().id,
        key: store::KeyDigest::of_spki(b"the CSR's key"),
        crl_shard: 0,
    }
}

/// A processing order `id` taken to `sign-final` with `serial` in
/// `final-signing`: the moment before the final signature.
pub async fn signing_final(store: &Store, id: &str, serial: &str, now: i64) {
    at_sign_precert(store, id, now).await;
    assert!(
        store
            .claim_precert(&new_certificate(serial, id), None, now, now + 60_000)
            .await
            .unwrap()
    );
    assert!(
        store
            .store_precert(id, serial, b"precert", now)
            .await
            .unwrap()
    );
    assert!(store.store_scts(id, serial, b"scts", now).await.unwrap());
    assert!(store.begin_final_signing(serial).await.unwrap());
}

/// Order `id`, processing at sign-precert.
pub async fn at_sign_precert(store: &Store, id: &str, now: i64) {
    processing_order(store, id, now, now + 60_000).await;
    assert!(
        store
            .advance_step(id, FinalizeStep::CheckCaa, FinalizeStep::SignPrecert, now)
            .await
            .unwrap()
    );
}

/// A `valid` order `id` with its certificate `serial` issued.
pub async fn issued_order(store: &Store, id: &str, serial: &str, now: i64) {
    signing_final(store, id, serial, now).await;
    assert!(store.store_final(id, serial, b"final").await.unwrap());
}
