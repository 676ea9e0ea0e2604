//! The caa-checker stage against a real (SQLite) store and a real DNS
//! server on loopback: which authorizations are rechecked, what a failure
//! names, and how DNS trouble is retried.

use std::time::Duration;

use caa_checker::{CaaChecker, DNS_ATTEMPTS};
use dns::caa::CaaPolicy;
use dns::testing::TestDnsServer;
use domain::{
    AccountStatus, AuthzStatus, ChallengeStatus, ChallengeType, FinalizeStep, Identifier,
    OrderStatus, ProblemKind,
};
use proto::Job;
use queue::{Handler, StageError};
use store::{Account, Authz, Challenge, Order, Store, now_ms};

const HOUR_MS: i64 = 3_600_000;
const PREFIX: &str = "https://kiln.test/acme/acct/";

struct Fixture {
    checker: CaaChecker,
    store: Store,
    dns: TestDnsServer,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kiln.db").display());
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    store
        .insert_account(&Account {
            id: "acct".into(),
            key_thumbprint: "thumb".into(),
            jwk: "{}".into(),
            contact: vec![],
            status: AccountStatus::Valid,
            created_at: now_ms(),
        })
        .await
        .unwrap();
    let dns = TestDnsServer::start().await;
    let checker = CaaChecker {
        store: store.clone(),
        dns: dns.dns(),
        policy: CaaPolicy {
            issuer_domains: vec!["kiln.test".into()],
        },
        recheck_after: Duration::from_secs(7 * 3600),
        step_timeout: Duration::from_secs(30),
        account_url_prefix: PREFIX.into(),
        corroboration: None,
    };
    Fixture {
        checker,
        store,
        dns,
        _dir: dir,
    }
}

/// A finalizing order (at check-caa) whose authorizations were validated at
/// the given times (through the store's own challenge transitions); `*.`
/// marks a wildcard identifier.
async fn order_at_check_caa(store: &Store, id: &str, authzs: &[(&str, i64)]) {
    let now = now_ms();
    let order = Order {
        id: id.into(),
        account_id: "acct".into(),
        status: OrderStatus::Pending,
        step: None,
        identifiers: authzs.iter().map(|(n, _)| Identifier::dns(*n)).collect(),
        not_before: None,
        not_after: None,
        expires_at: now + HOUR_MS,
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
    let rows: Vec<(Authz, Vec<Challenge>)> = authzs
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let base = name.strip_prefix("*.");
            let authz = Authz {
                id: format!("{id}-a{i}"),
                order_id: id.into(),
                account_id: "acct".into(),
                identifier: base.unwrap_or(name).to_string(),
                wildcard: base.is_some(),
                status: AuthzStatus::Pending,
                expires_at: now + HOUR_MS,
                validated_at: None,
            };
            let challenge = Challenge {
                id: format!("{id}-c{i}"),
                authz_id: authz.id.clone(),
                kind: ChallengeType::Dns01,
                token: format!("token{i}"),
                status: ChallengeStatus::Pending,
                validated_at: None,
                error: None,
            };
            (authz, vec![challenge])
        })
        .collect();
    store.insert_order(&order, &rows).await.unwrap();
    for (i, (_, validated_at)) in authzs.iter().enumerate() {
        let c = format!("{id}-c{i}");
        assert!(store.start_challenge(&c, now + 30_000).await.unwrap());
        assert!(
            store
                .finish_challenge(&c, Ok(()), *validated_at)
                .await
                .unwrap()
        );
    }
    for (i, (_, validated_at)) in authzs.iter().enumerate() {
        let authz = store.authz(&format!("{id}-a{i}")).await.unwrap().unwrap();
        assert_eq!(authz.validated_at, Some(*validated_at));
    }
    assert!(
        store
            .begin_finalize(id, b"csr", now, now + 30_000, now + 600_000, None)
            .await
            .unwrap()
    );
}

fn job(id: &str) -> Job {
    Job::CheckCaa {
        order_id: id.into(),
    }
}

fn caa_queries(dns: &TestDnsServer) -> Vec<String> {
    dns.queries()
        .into_iter()
        .filter(|q| q.qtype == "CAA")
        .map(|q| q.name)
        .collect()
}

/// Three stale authorizations, CAA forbidding only the third: the order
/// fails with `caa` and exactly one subproblem naming the third; each name
/// was looked up (not one name three times).
#[tokio::test]
async fn stale_authorizations_are_each_rechecked_and_failures_named() {
    let f = fixture().await;
    let stale = now_ms() - 8 * HOUR_MS;
    f.dns
        .set_caa("c.test", false, "issue", "other-ca.test")
        .await;
    f.dns.set_caa("b.test", false, "issue", "kiln.test").await;
    order_at_check_caa(
        &f.store,
        "o1",
        &[("a.test", stale), ("www.b.test", stale), ("c.test", stale)],
    )
    .await;
    assert!(f.checker.handle(&job("o1"), 1).await.unwrap().is_empty());

    let order = f.store.order("o1").await.unwrap().unwrap();
    assert_eq!(order.status, OrderStatus::Invalid);
    let problem = order.error.unwrap();
    assert_eq!(problem.kind, ProblemKind::Caa);
    let named: Vec<_> = problem
        .subproblems
        .iter()
        .map(|p| p.identifier.clone())
        .collect();
    assert_eq!(named, [Some(Identifier::dns("c.test"))], "{problem:?}");
    let asked = caa_queries(&f.dns);
    for name in ["a.test", "www.b.test", "c.test"] {
        assert!(asked.iter().any(|a| a == name), "{name}: {asked:?}");
    }
}

/// Only authorizations older than the window are looked up; the order moves
/// on to sign-precert.
#[tokio::test]
async fn fresh_authorizations_are_not_looked_up() {
    let f = fixture().await;
    let now = now_ms();
    // Both forbid, but only the stale one is asked (and it allows).
    f.dns
        .set_caa("fresh.test", false, "issue", "other-ca.test")
        .await;
    order_at_check_caa(
        &f.store,
        "o2",
        &[
            ("fresh.test", now - HOUR_MS),
            ("stale.test", now - 7 * HOUR_MS - 60_000),
        ],
    )
    .await;
    assert_eq!(
        f.checker.handle(&job("o2"), 1).await.unwrap(),
        [Job::SignPrecert {
            order_id: "o2".into()
        }]
    );
    let order = f.store.order("o2").await.unwrap().unwrap();
    assert_eq!(order.step, Some(FinalizeStep::SignPrecert));
    assert_eq!(caa_queries(&f.dns), ["stale.test", "test"]);

    // A redelivery finds the order past this step and re-emits its job.
    assert_eq!(
        f.checker.handle(&job("o2"), 2).await.unwrap(),
        [Job::SignPrecert {
            order_id: "o2".into()
        }]
    );
}

/// A stale wildcard authorization is rechecked as a wildcard: `issuewild`
/// decides, and the account URI is the order's account.
#[tokio::test]
async fn wildcards_and_account_uri_at_recheck() {
    let f = fixture().await;
    let stale = now_ms() - 8 * HOUR_MS;
    f.dns
        .set_caa("w.test", false, "issuewild", "other-ca.test")
        .await;
    f.dns.set_caa("w.test", false, "issue", "kiln.test").await;
    f.dns
        .set_caa(
            "acct.test",
            false,
            "issue",
            &format!("kiln.test; accounturi={PREFIX}acct"),
        )
        .await;
    order_at_check_caa(
        &f.store,
        "o3",
        &[("*.w.test", stale), ("w.test", stale), ("acct.test", stale)],
    )
    .await;
    f.checker.handle(&job("o3"), 1).await.unwrap();
    let problem = f.store.order("o3").await.unwrap().unwrap().error.unwrap();
    let named: Vec<_> = problem
        .subproblems
        .iter()
        .map(|p| p.identifier.clone())
        .collect();
    assert_eq!(named, [Some(Identifier::dns("*.w.test"))], "{problem:?}");
}

/// RFC 8657 §4 at the recheck: each name is checked against the method that
/// validated it (dns-01 here), not waved through as "method unknown".
#[tokio::test]
async fn validation_methods_are_honoured_at_recheck() {
    let f = fixture().await;
    let stale = now_ms() - 8 * HOUR_MS;
    f.dns
        .set_caa(
            "dns-ok.test",
            false,
            "issue",
            "kiln.test; validationmethods=dns-01",
        )
        .await;
    f.dns
        .set_caa(
            "http-only.test",
            false,
            "issue",
            "kiln.test; validationmethods=http-01",
        )
        .await;
    order_at_check_caa(
        &f.store,
        "o-methods",
        &[("dns-ok.test", stale), ("http-only.test", stale)],
    )
    .await;
    f.checker.handle(&job("o-methods"), 1).await.unwrap();
    let order = f.store.order("o-methods").await.unwrap().unwrap();
    let problem = order.error.expect("refused");
    let named: Vec<_> = problem
        .subproblems
        .iter()
        .map(|p| p.identifier.clone())
        .collect();
    assert_eq!(
        named,
        [Some(Identifier::dns("http-only.test"))],
        "{problem:?}"
    );
    assert!(
        problem.subproblems[0].detail.contains("dns-01"),
        "names the method: {problem:?}"
    );
}

/// SERVFAIL: retried (the runner spaces the attempts out) until the last
/// attempt, which ends the order with `dns` naming the identifier.
#[tokio::test]
async fn dns_failures_are_retried_then_fail_with_dns() {
    let f = fixture().await;
    let stale = now_ms() - 8 * HOUR_MS;
    f.dns.set_servfail("flaky.test");
    order_at_check_caa(&f.store, "o4", &[("flaky.test", stale), ("ok.test", stale)]).await;
    let flaky_queries = || {
        caa_queries(&f.dns)
            .iter()
            .filter(|n| *n == "flaky.test")
            .count()
    };
    for attempt in 1..DNS_ATTEMPTS {
        let before = flaky_queries();
        let err = f.checker.handle(&job("o4"), attempt).await.unwrap_err();
        assert!(matches!(err, StageError::Retry { .. }), "{err}");
        assert!(
            flaky_queries() > before,
            "attempt {attempt} asked DNS again"
        );
        let order = f.store.order("o4").await.unwrap().unwrap();
        assert_eq!(order.status, OrderStatus::Processing);
        assert_eq!(order.step, Some(FinalizeStep::CheckCaa));
    }

    assert!(
        f.checker
            .handle(&job("o4"), DNS_ATTEMPTS)
            .await
            .unwrap()
            .is_empty()
    );
    let order = f.store.order("o4").await.unwrap().unwrap();
    assert_eq!(order.status, OrderStatus::Invalid);
    let problem = order.error.unwrap();
    assert_eq!(problem.kind, ProblemKind::Dns, "{problem:?}");
    let named: Vec<_> = problem
        .subproblems
        .iter()
        .map(|p| (p.identifier.clone(), p.kind))
        .collect();
    assert_eq!(
        named,
        [(Some(Identifier::dns("flaky.test")), ProblemKind::Dns)]
    );
}

/// DNS trouble never hides a CAA refusal: with one name failing to resolve
/// and one forbidden, the order fails at once, with `caa`, naming both.
#[tokio::test]
async fn a_forbidden_name_is_not_retried() {
    let f = fixture().await;
    let stale = now_ms() - 8 * HOUR_MS;
    f.dns.set_servfail("flaky.test");
    f.dns
        .set_caa("no.test", false, "issue", "other-ca.test")
        .await;
    order_at_check_caa(&f.store, "o5", &[("flaky.test", stale), ("no.test", stale)]).await;
    assert!(f.checker.handle(&job("o5"), 1).await.unwrap().is_empty());
    let problem = f.store.order("o5").await.unwrap().unwrap().error.unwrap();
    assert_eq!(problem.kind, ProblemKind::Caa);
    assert_eq!(problem.subproblems.len(), 2, "{problem:?}");
}
