//! One story of an order's life, told to both back ends: whatever SQLite
//! accepts, PostgreSQL must accept the same way, compare-and-set results
//! included. PostgreSQL comes from KILN_TEST_DATABASE_URL (default: the
//! machine's local server); each run uses a fresh database.

use domain::{
    AccountStatus, AuthzStatus, ChallengeStatus, ChallengeType, FinalizeStep, Identifier,
    OrderStatus, Problem, ProblemKind,
};
use store::{
    Account, Authz, CertificateState, Challenge, NewCertificate, Order, Store, StoreError, now_ms,
};

fn account(id: &str) -> Account {
    Account {
        id: id.into(),
        key_thumbprint: format!("thumb-{id}"),
        jwk: "{}".into(),
        contact: vec!["mailto:a@kiln.test".into()],
        status: AccountStatus::Valid,
        created_at: now_ms(),
    }
}

fn order(id: &str, account: &str, names: &[&str]) -> (Order, Vec<(Authz, Vec<Challenge>)>) {
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

/// Drives an order to `ready` by validating each of its challenges.
async fn make_ready(store: &Store, id: &str, n: usize) {
    for i in 0..n {
        let c = format!("{id}-c{i}");
        assert!(store.start_challenge(&c, now_ms() + 1000).await.unwrap());
        assert!(store.finish_challenge(&c, Ok(()), now_ms()).await.unwrap());
    }
}

async fn story(store: Store) {
    store.migrate().await.unwrap();
    store.migrate().await.unwrap(); // idempotent

    // Secrets are created once and then shared.
    let s1 = store.secret("k", b"first").await.unwrap();
    assert_eq!(s1, b"first");
    assert_eq!(store.secret("k", b"second").await.unwrap(), b"first");

    // A nonce is usable once.
    let far = now_ms() + 60_000;
    assert!(store.consume_nonce("n1", far).await.unwrap());
    assert!(!store.consume_nonce("n1", far).await.unwrap());
    assert!(store.consume_nonce("old", 1).await.unwrap());
    assert_eq!(store.prune_nonces(now_ms()).await.unwrap(), 1);

    // One key, one account.
    let (a, created) = store.insert_account(&account("acct1")).await.unwrap();
    assert!(created);
    let mut dup = account("acct1-again");
    dup.key_thumbprint = a.key_thumbprint.clone();
    let (same, created) = store.insert_account(&dup).await.unwrap();
    assert!(!created);
    assert_eq!(same.id, "acct1");
    store.insert_account(&account("acct2")).await.unwrap();
    assert!(matches!(
        store.change_account_key("acct1", "thumb-acct1", "thumb-acct2", "{}").await,
        Err(StoreError::Conflict(other)) if other == "acct2"
    ));
    assert!(
        !store
            .change_account_key("acct1", "wrong-old", "thumb-new", "{}")
            .await
            .unwrap()
    );
    assert!(
        store
            .change_account_key("acct1", "thumb-acct1", "thumb-new", "{}")
            .await
            .unwrap()
    );
    assert!(
        store
            .update_account_contact("acct1", &["mailto:b@kiln.test".into()])
            .await
            .unwrap()
    );
    assert_eq!(
        store.account("acct1").await.unwrap().unwrap().contact,
        vec!["mailto:b@kiln.test"]
    );

    // An order with two names becomes ready only when both are validated.
    let (o, authzs) = order("o1", "acct1", &["a.kiln.test", "b.kiln.test"]);
    store.insert_order(&o, &authzs).await.unwrap();
    assert_eq!(store.order("o1").await.unwrap().unwrap(), o);
    assert_eq!(store.authzs_for_order("o1").await.unwrap().len(), 2);
    assert!(
        store
            .start_challenge("o1-c0", now_ms() + 1000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .start_challenge("o1-c0", now_ms() + 1000)
            .await
            .unwrap(),
        "CAS: once"
    );
    assert!(
        store
            .finish_challenge("o1-c0", Ok(()), now_ms())
            .await
            .unwrap()
    );
    assert!(
        !store
            .finish_challenge("o1-c0", Ok(()), now_ms())
            .await
            .unwrap()
    );
    assert_eq!(
        store.order("o1").await.unwrap().unwrap().status,
        OrderStatus::Pending
    );
    make_ready_rest(&store).await;
    assert_eq!(
        store.order("o1").await.unwrap().unwrap().status,
        OrderStatus::Ready
    );
    assert_eq!(
        store.order_ids_for_account("acct1", 0, 10).await.unwrap(),
        vec!["o1"]
    );

    // Exactly one finalize wins; its trace id is kept with the order.
    let now = now_ms();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    assert_eq!(
        store.processing_counts(now).await.unwrap(),
        Default::default()
    );
    assert!(
        store
            .begin_finalize("o1", b"csr", now, now + 1000, now + 60_000, Some(trace))
            .await
            .unwrap()
    );
    assert!(
        !store
            .begin_finalize(
                "o1",
                b"csr",
                now,
                now + 1000,
                now + 60_000,
                Some("00000000000000000000000000000001")
            )
            .await
            .unwrap()
    );
    let o1 = store.order("o1").await.unwrap().unwrap();
    assert_eq!(
        (o1.status, o1.step),
        (OrderStatus::Processing, Some(FinalizeStep::CheckCaa))
    );
    assert_eq!(o1.csr.as_deref(), Some(&b"csr"[..]));
    assert_eq!(o1.timeline.trace_id.as_deref(), Some(trace), "the winner's");
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

    // Steps advance by compare-and-set.
    assert!(
        store
            .advance_step(
                "o1",
                FinalizeStep::CheckCaa,
                FinalizeStep::SignPrecert,
                now + 1000
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .advance_step(
                "o1",
                FinalizeStep::CheckCaa,
                FinalizeStep::SignPrecert,
                now + 1000
            )
            .await
            .unwrap()
    );

    // Serials are reserved before signing and never reused.
    let cert = NewCertificate {
        serial: "01ab".into(),
        order_id: "o1".into(),
        account_id: "acct1".into(),
        not_before: now,
        not_after: now + 1000,
    };
    store.reserve_serial(&cert).await.unwrap();
    assert!(matches!(
        store.reserve_serial(&cert).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        store
            .store_precert("o1", "01ab", b"precert", now + 1000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .store_precert("o1", "01ab", b"precert", now + 1000)
            .await
            .unwrap()
    );
    assert!(
        !store.begin_final_signing("01ab").await.unwrap(),
        "no SCTs yet"
    );
    assert!(
        store
            .store_scts("o1", "01ab", b"scts", now + 1000)
            .await
            .unwrap()
    );
    assert!(store.begin_final_signing("01ab").await.unwrap());
    assert!(
        !store.begin_final_signing("01ab").await.unwrap(),
        "signing begins once"
    );
    assert!(store.store_final("o1", "01ab", b"final").await.unwrap());
    let o1 = store.order("o1").await.unwrap().unwrap();
    assert_eq!((o1.status, o1.step), (OrderStatus::Valid, None));
    assert_eq!(o1.certificate_serial.as_deref(), Some("01ab"));
    let t = &o1.timeline;
    let times = [t.caa_checked_at, t.precert_at, t.scts_at, t.completed_at];
    assert!(
        times.iter().all(Option::is_some),
        "every step is timed: {t:?}"
    );
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in order: {t:?}");
    let latencies = store.recent_finalize_latencies(10).await.unwrap();
    assert_eq!(latencies.len(), 1);
    assert!(latencies[0] >= 0);
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
    let c = store.certificate("01ab").await.unwrap().unwrap();
    assert_eq!(c.state, CertificateState::Issued);
    assert_eq!(c.final_der.as_deref(), Some(&b"final"[..]));

    // Revocation happens once.
    assert!(store.revoke_certificate("01ab", 1, now).await.unwrap());
    assert!(!store.revoke_certificate("01ab", 1, now).await.unwrap());

    // A crash after "final signing begun": the serial is abandoned, its
    // precertificate kept, and the order goes back for a new serial.
    let (o, authzs) = order("o2", "acct1", &["c.kiln.test"]);
    store.insert_order(&o, &authzs).await.unwrap();
    make_ready(&store, "o2", 1).await;
    assert!(
        store
            .begin_finalize("o2", b"csr", now, now - 1, now + 60_000, None)
            .await
            .unwrap()
    );
    assert_eq!(
        store.overdue_orders(now_ms(), 10).await.unwrap()[0].id,
        "o2"
    );
    assert!(
        store
            .extend_step_deadline("o2", FinalizeStep::CheckCaa, now_ms() + 60_000)
            .await
            .unwrap()
    );
    assert!(store.overdue_orders(now_ms(), 10).await.unwrap().is_empty());
    store
        .advance_step("o2", FinalizeStep::CheckCaa, FinalizeStep::SignPrecert, now)
        .await
        .unwrap();
    store
        .reserve_serial(&NewCertificate {
            serial: "02".into(),
            order_id: "o2".into(),
            ..cert.clone()
        })
        .await
        .unwrap();
    store.store_precert("o2", "02", b"p2", now).await.unwrap();
    store.store_scts("o2", "02", b"s2", now).await.unwrap();
    store.begin_final_signing("02").await.unwrap();
    assert!(store.restart_issuance("o2", "02", now).await.unwrap());
    let o2 = store.order("o2").await.unwrap().unwrap();
    assert_eq!(
        (o2.step, o2.certificate_serial),
        (Some(FinalizeStep::SignPrecert), None)
    );
    let c2 = store.certificate("02").await.unwrap().unwrap();
    assert_eq!(c2.state, CertificateState::Abandoned);
    assert_eq!(c2.precert_der.as_deref(), Some(&b"p2"[..]));
    assert!(
        !store.store_final("o2", "02", b"late").await.unwrap(),
        "abandoned serial never issues"
    );

    // Failing ends processing with the problem stored; only once.
    let problem = Problem::new(ProblemKind::Caa, "forbidden");
    assert!(store.fail_order("o2", &problem).await.unwrap());
    assert!(!store.fail_order("o2", &problem).await.unwrap());
    let o2 = store.order("o2").await.unwrap().unwrap();
    assert_eq!((o2.status, o2.error), (OrderStatus::Invalid, Some(problem)));

    // A failed challenge invalidates its order; deactivation too.
    let (o, authzs) = order("o3", "acct1", &["d.kiln.test"]);
    store.insert_order(&o, &authzs).await.unwrap();
    store.start_challenge("o3-c0", now_ms() - 1).await.unwrap();
    assert_eq!(
        store.overdue_challenges(now_ms(), 10).await.unwrap()[0].id,
        "o3-c0"
    );
    let bad = Problem::new(ProblemKind::IncorrectResponse, "nope");
    store
        .finish_challenge("o3-c0", Err(&bad), now_ms())
        .await
        .unwrap();
    assert_eq!(
        store.order("o3").await.unwrap().unwrap().status,
        OrderStatus::Invalid
    );
    assert_eq!(
        store.challenge("o3-c0").await.unwrap().unwrap().error,
        Some(bad)
    );
    let (o, authzs) = order("o4", "acct1", &["e.kiln.test"]);
    store.insert_order(&o, &authzs).await.unwrap();
    assert!(store.deactivate_authz("o4-a0").await.unwrap());
    assert!(!store.deactivate_authz("o4-a0").await.unwrap());
    assert_eq!(
        store.order("o4").await.unwrap().unwrap().status,
        OrderStatus::Invalid
    );

    // Client-compatibility observations.
    let obs = store::FinalizeObservation {
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
    store.observe_poll("unobserved", now).await.unwrap();
    assert_eq!(store.polls_after_finalize("o1").await.unwrap(), 2);
    assert_eq!(store.polls_after_finalize("unobserved").await.unwrap(), 0);
    let seen = store.finalize_observations(now).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].polls, seen[0].first_poll_at, seen[0].downloaded_at),
        (2, Some(now + 5), Some(now + 10))
    );
    assert!(
        store
            .finalize_observations(now + 1)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(store.deactivate_account("acct2").await.unwrap());
    assert!(!store.deactivate_account("acct2").await.unwrap());
    assert!(store.ping().await);
}

async fn make_ready_rest(store: &Store) {
    assert!(
        store
            .start_challenge("o1-c1", now_ms() + 1000)
            .await
            .unwrap()
    );
    assert!(
        store
            .finish_challenge("o1-c1", Ok(()), now_ms())
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn story_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("story.db").display());
    story(Store::connect(&url).await.unwrap()).await;
}

#[tokio::test]
async fn story_on_postgres() {
    let admin_url = std::env::var("KILN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let admin = Store::connect(&admin_url)
        .await
        .expect("PostgreSQL must be running (see .ci/run)");
    // Unique per run, so parallel or leftover runs never collide.
    let db = format!("kiln_story_{}_{}", std::process::id(), now_ms());
    admin
        .execute_admin(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let url = match admin_url.rfind('/') {
        Some(i) => format!("{}/{db}", &admin_url[..i]),
        None => panic!("database URL without a database name"),
    };
    let store = Store::connect(&url).await.unwrap();
    story(store.clone()).await;
    store.close().await;
    admin
        .execute_admin(&format!("DROP DATABASE {db}"))
        .await
        .unwrap();
}
