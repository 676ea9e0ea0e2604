//! Multi-Perspective Issuance Corroboration (BR 3.2.2.9) in the all-in-one:
//! three remote perspectives, each resolving through its own DNS server, so
//! that one or two can be shown another world (an A record, a TXT value, a
//! CAA record) and the quorum decides; instant-acme is the client.

use dns::testing::TestDnsServer;
use instant_acme::{Account, ChallengeType, Error, Order, OrderStatus, RetryPolicy};
use kiln::perspectives::PerspectiveSpec;
use kiln_tests::TestKiln;
use kiln_tests::instant::{account, new_order};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The primary's DNS server and one per remote perspective.
struct World {
    primary: TestDnsServer,
    remotes: Vec<TestDnsServer>,
}

impl World {
    async fn start() -> World {
        let primary = TestDnsServer::start().await;
        let mut remotes = Vec::new();
        for _ in 0..3 {
            remotes.push(TestDnsServer::start().await);
        }
        World { primary, remotes }
    }

    fn perspectives(&self) -> Vec<PerspectiveSpec> {
        self.remotes
            .iter()
            .enumerate()
            .map(|(i, dns)| format!("remote-{i}={}", dns.addr()).parse().unwrap())
            .collect()
    }

    /// Every server (the primary's first), for records all should see.
    fn all(&self) -> impl Iterator<Item = &TestDnsServer> {
        std::iter::once(&self.primary).chain(&self.remotes)
    }
}

/// A Kiln whose primary resolves through `world.primary`, with its remotes.
async fn kiln_in(world: &World, deadline: Duration) -> TestKiln {
    let perspectives = world.perspectives();
    let primary = world.primary.addr();
    TestKiln::start_with(Some(primary), move |c| {
        c.mpic.perspectives = perspectives;
        c.mpic.deadline = Some(deadline);
    })
    .await
}

/// The dns-01 TXT of the order's one authorization, published where
/// `publish` says (the primary always), then the challenge declared ready;
/// returns the challenge id and the order's outcome.
async fn dns01(
    order: &mut Order,
    publish: impl Fn(&str, &str) -> Vec<(String, String, usize)>,
    world: &World,
) -> (String, Result<OrderStatus, Error>) {
    let mut authzs = order.authorizations();
    let mut authz = authzs.next().await.expect("one").expect("authorization");
    let mut challenge = authz.challenge(ChallengeType::Dns01).expect("dns-01");
    let name = challenge.identifier().to_string();
    let value = challenge.key_authorization().dns_value();
    world
        .primary
        .set_txt(&format!("_acme-challenge.{name}"), &value)
        .await;
    for (record, txt, remote) in publish(&name, &value) {
        world.remotes[remote].set_txt(&record, &txt).await;
    }
    let id = challenge.url.rsplit('/').next().unwrap().to_string();
    challenge.set_ready().await.expect("ready");
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(100))
        .timeout(Duration::from_secs(30));
    (id, order.poll_ready(&retry).await)
}

/// The TXT every remote in `agreeing` sees, and another value for the rest.
fn txt_seen_by(agreeing: &'static [usize]) -> impl Fn(&str, &str) -> Vec<(String, String, usize)> {
    move |name, value| {
        (0..3)
            .map(|i| {
                let seen = if agreeing.contains(&i) {
                    value.to_string()
                } else {
                    "hijacked".into()
                };
                (format!("_acme-challenge.{name}"), seen, i)
            })
            .collect()
    }
}

async fn results(kiln: &TestKiln, challenge_id: &str) -> (String, Vec<(String, String)>) {
    let record = kiln
        .kiln
        .store
        .corroboration(challenge_id)
        .await
        .unwrap()
        .expect("corroboration recorded");
    let seen = record
        .results
        .iter()
        .map(|r| (r.perspective.clone(), r.result.clone()))
        .collect();
    (record.verdict.unwrap_or_default(), seen)
}

async fn new_account_and_order(kiln: &TestKiln, name: &str) -> (Account, Order) {
    let account = account(kiln).await;
    let order = new_order(&account, &[name]).await;
    (account, order)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_agree_and_one_disagreeing_on_a_txt_value_is_outvoted() {
    let world = World::start().await;
    let kiln = kiln_in(&world, Duration::from_secs(10)).await;

    let (_account, mut order) = new_account_and_order(&kiln, "agree.test").await;
    let (id, ready) = dns01(&mut order, txt_seen_by(&[0, 1, 2]), &world).await;
    assert_eq!(ready.expect("ready"), OrderStatus::Ready);
    let (verdict, seen) = results(&kiln, &id).await;
    assert_eq!(verdict, "3/3");
    assert!(seen.iter().all(|(_, r)| r == "corroborated"), "{seen:?}");

    let (_account, mut order) = new_account_and_order(&kiln, "one-off.test").await;
    let (id, ready) = dns01(&mut order, txt_seen_by(&[0, 1]), &world).await;
    assert_eq!(ready.expect("ready despite one"), OrderStatus::Ready);
    let (verdict, seen) = results(&kiln, &id).await;
    assert_eq!(verdict, "2/3");
    assert!(
        seen.contains(&("remote-2".into(), "disagreed".into())),
        "{seen:?}"
    );
    kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_disagreeing_make_the_challenge_invalid_and_are_named() {
    let world = World::start().await;
    let kiln = kiln_in(&world, Duration::from_secs(10)).await;
    let (_account, mut order) = new_account_and_order(&kiln, "hijack.test").await;
    // remote-1 sees another TXT value; remote-2 a CAA record for another CA.
    world.remotes[2]
        .set_caa("hijack.test", false, "issue", "other-ca.example")
        .await;
    let (id, outcome) = dns01(
        &mut order,
        |name, value| {
            let record = format!("_acme-challenge.{name}");
            vec![
                (record.clone(), value.into(), 0),
                (record.clone(), "hijacked".into(), 1),
                (record, value.into(), 2),
            ]
        },
        &world,
    )
    .await;
    let Err(Error::Api(problem)) = outcome else {
        panic!("expected the order to fail: {outcome:?}");
    };
    assert_eq!(
        problem.r#type.as_deref(),
        Some("urn:ietf:params:acme:error:unauthorized")
    );
    let named: Vec<String> = problem
        .subproblems
        .iter()
        .filter_map(|p| p.detail.clone())
        .collect();
    assert_eq!(named.len(), 2, "{named:?}");
    assert!(named[0].starts_with("perspective remote-1:"), "{named:?}");
    assert!(named[1].starts_with("perspective remote-2:"), "{named:?}");
    assert!(
        named[1].contains("other-ca.example"),
        "what it saw: {named:?}"
    );
    let (verdict, _) = results(&kiln, &id).await;
    assert_eq!(verdict, "1/3");
    kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http01_address_seen_elsewhere_by_one_is_outvoted() {
    let world = World::start().await;
    let kiln = kiln_in(&world, Duration::from_secs(10)).await;
    let name = "address.test";
    let here = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for dns in world.all().take(3) {
        dns.set_a(name, here).await;
    }
    // Nothing answers http-01 on 127.0.0.2.
    world.remotes[2]
        .set_a(name, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .await;
    let (_account, mut order) = new_account_and_order(&kiln, name).await;
    let mut authzs = order.authorizations();
    let mut authz = authzs.next().await.unwrap().unwrap();
    let mut challenge = authz.challenge(ChallengeType::Http01).unwrap();
    kiln.http01
        .set(&challenge.token, challenge.key_authorization().as_str());
    let id = challenge.url.rsplit('/').next().unwrap().to_string();
    challenge.set_ready().await.unwrap();
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(100))
        .timeout(Duration::from_secs(30));
    assert_eq!(order.poll_ready(&retry).await.unwrap(), OrderStatus::Ready);
    let (verdict, seen) = results(&kiln, &id).await;
    assert_eq!(verdict, "2/3");
    assert!(
        seen.contains(&("remote-2".into(), "disagreed".into())),
        "{seen:?}"
    );
    kiln.kiln.shutdown().await;
}

/// A DNS server that never answers: its perspective cannot corroborate
/// before the deadline.
fn silent_dns() -> (std::net::UdpSocket, SocketAddr) {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_perspective_that_never_answers_counts_as_not_corroborating() {
    let world = World::start().await;
    let (_socket, silent) = silent_dns();
    let mut perspectives = world.perspectives();
    perspectives[0] = format!("remote-0={silent}").parse().unwrap();
    let primary = world.primary.addr();
    let kiln = TestKiln::start_with(Some(primary), move |c| {
        c.mpic.perspectives = perspectives;
        c.mpic.deadline = Some(Duration::from_secs(2));
    })
    .await;

    // With the other two agreeing, one silent perspective is outvoted.
    let (_account, mut order) = new_account_and_order(&kiln, "quiet.test").await;
    let (id, ready) = dns01(&mut order, txt_seen_by(&[1, 2]), &world).await;
    assert_eq!(ready.expect("ready"), OrderStatus::Ready);
    let (verdict, _) = results(&kiln, &id).await;
    assert_eq!(verdict, "2/3");

    // With one of them disagreeing too, the quorum fails, naming both.
    let (_account, mut order) = new_account_and_order(&kiln, "quiet-and-off.test").await;
    let (_, outcome) = dns01(&mut order, txt_seen_by(&[1]), &world).await;
    let Err(Error::Api(problem)) = outcome else {
        panic!("expected the order to fail: {outcome:?}");
    };
    let named: Vec<String> = problem
        .subproblems
        .iter()
        .filter_map(|p| p.detail.clone())
        .collect();
    assert!(
        named
            .iter()
            .any(|d| d == "perspective remote-0: no answer before the deadline"),
        "{named:?}"
    );
    assert!(
        named.iter().any(|d| d.starts_with("perspective remote-2:")),
        "{named:?}"
    );
    kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_only_counts_a_failed_quorum_without_refusing() {
    let world = World::start().await;
    let perspectives = world.perspectives();
    let primary = world.primary.addr();
    let kiln = TestKiln::start_with(Some(primary), move |c| {
        c.mpic.perspectives = perspectives;
        c.mpic.enforcement = mpic::quorum::Enforcement::ObserveOnly;
    })
    .await;
    let (_account, mut order) = new_account_and_order(&kiln, "observed.test").await;
    let (id, ready) = dns01(&mut order, txt_seen_by(&[0]), &world).await;
    assert_eq!(ready.expect("not blocked"), OrderStatus::Ready);
    let (verdict, _) = results(&kiln, &id).await;
    assert_eq!(verdict, "1/3", "the failure is recorded");
    kiln.kiln.shutdown().await;
}

/// The finalize-time CAA recheck is corroborated too: a CAA record that
/// appears after validation at one remote is outvoted, at two it refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caa_recheck_at_finalize_is_corroborated() {
    let world = World::start().await;
    let perspectives = world.perspectives();
    let primary = world.primary.addr();
    let kiln = TestKiln::start_with(Some(primary), move |c| {
        c.mpic.perspectives = perspectives;
        // Every finalize rechecks CAA.
        c.caa_recheck_after = Duration::ZERO;
    })
    .await;
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(100))
        .timeout(Duration::from_secs(30));

    for (name, forbidding, issued) in [
        ("recheck-one.test", 1, true),
        ("recheck-two.test", 2, false),
    ] {
        let (_account, mut order) = new_account_and_order(&kiln, name).await;
        let (_, ready) = dns01(&mut order, txt_seen_by(&[0, 1, 2]), &world).await;
        assert_eq!(ready.expect("ready"), OrderStatus::Ready);
        for remote in &world.remotes[..forbidding] {
            remote
                .set_caa(name, false, "issue", "other-ca.example")
                .await;
        }
        order
            .finalize_csr(&kiln_tests::csr_der(&[name]))
            .await
            .expect("finalize");
        let outcome = order.poll_certificate(&retry).await;
        let verdict = kiln
            .kiln
            .store
            .corroboration(&store::caa_recheck_subject(&order_id(&mut order)))
            .await
            .unwrap()
            .and_then(|c| c.verdict);
        if issued {
            outcome.expect("issued despite one");
            assert_eq!(verdict.as_deref(), Some("2/3"), "{name}");
        } else {
            let Err(Error::Api(problem)) = outcome else {
                panic!("{name}: expected the order to fail: {outcome:?}");
            };
            assert_eq!(
                problem.r#type.as_deref(),
                Some("urn:ietf:params:acme:error:caa")
            );
            let named: Vec<String> = problem
                .subproblems
                .iter()
                .filter_map(|p| p.detail.clone())
                .collect();
            assert_eq!(named.len(), 2, "{named:?}");
            assert!(named[0].starts_with("perspective remote-0:"), "{named:?}");
            assert!(named[0].contains("other-ca.example"), "{named:?}");
            assert_eq!(verdict.as_deref(), Some("1/3"), "{name}");
        }
    }
    kiln.kiln.shutdown().await;
}

/// The order's id, the last segment of its URL.
fn order_id(order: &mut Order) -> String {
    order.url().rsplit('/').next().unwrap().to_string()
}
