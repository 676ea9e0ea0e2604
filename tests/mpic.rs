//! Multi-Perspective Issuance Corroboration (BR 3.2.2.9) in the all-in-one:
//! three remote perspectives, each resolving through its own DNS server, so
//! that one or two can be shown another world (an A record, a TXT value, a
//! CAA record) and the quorum decides; instant-acme is the client.

use dns::testing::TestDnsServer;
use instant_acme::{ChallengeType, Order, OrderStatus, RetryPolicy};
use kiln::EmbeddedConfig;
use kiln::perspectives::PerspectiveSpec;
use kiln_tests::TestKiln;
use kiln_tests::instant::{account, new_order};
use kiln_tests::perspectives::{answer_dns01_seen_by, refusal, subproblem_details};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

const UNAUTHORIZED: Option<&str> = Some("urn:ietf:params:acme:error:unauthorized");

/// The primary's DNS server and one per remote perspective (`remote-0`…).
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

    /// A Kiln whose primary resolves through `primary`, with the remotes
    /// (as `tweak` leaves them).
    async fn kiln(&self, tweak: impl FnOnce(&mut EmbeddedConfig) + Send + 'static) -> TestKiln {
        let perspectives = self.perspectives();
        TestKiln::start_with(Some(self.primary.addr()), move |c| {
            c.mpic.perspectives = perspectives;
            tweak(c);
        })
        .await
    }

    /// A new account's order for `name`, answered by dns-01 as the remotes
    /// in `agreeing` see it.
    async fn order(
        &self,
        kiln: &TestKiln,
        name: &str,
        agreeing: &[usize],
    ) -> (Order, String, Result<OrderStatus, instant_acme::Error>) {
        let account = account(kiln).await;
        let mut order = new_order(&account, &[name]).await;
        let (id, outcome) =
            answer_dns01_seen_by(&mut order, &self.primary, &self.remotes, agreeing).await;
        (order, id, outcome)
    }
}

/// The verdict stored for `subject`, and each perspective's result.
async fn results(kiln: &TestKiln, subject: &str) -> (String, Vec<(String, String)>) {
    let record = kiln
        .kiln
        .store
        .corroboration(subject)
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

fn retry() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(100))
        .timeout(Duration::from_secs(30))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_agree_and_one_disagreeing_on_a_txt_value_or_caa_is_outvoted() {
    let world = World::start().await;
    let admin = std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, kiln_tests::free_port()));
    let kiln = world.kiln(move |c| c.admin_listen = Some(admin)).await;

    let (_, id, ready) = world.order(&kiln, "agree.test", &[0, 1, 2]).await;
    assert_eq!(ready.expect("ready"), OrderStatus::Ready);
    let (verdict, seen) = results(&kiln, &id).await;
    assert_eq!(verdict, "3/3");
    assert!(seen.iter().all(|(_, r)| r == "corroborated"), "{seen:?}");

    let (_, id, ready) = world.order(&kiln, "one-off.test", &[0, 1]).await;
    assert_eq!(ready.expect("ready despite one"), OrderStatus::Ready);
    let (verdict, seen) = results(&kiln, &id).await;
    assert_eq!(verdict, "2/3");
    assert!(
        seen.contains(&("remote-2".into(), "disagreed".into())),
        "{seen:?}"
    );

    // remote-0 alone sees a CAA record for another CA.
    world.remotes[0]
        .set_caa("caa-off.test", false, "issue", "other-ca.example")
        .await;
    let (_, id, ready) = world.order(&kiln, "caa-off.test", &[0, 1, 2]).await;
    assert_eq!(ready.expect("ready despite one"), OrderStatus::Ready);
    let (verdict, seen) = results(&kiln, &id).await;
    assert_eq!(verdict, "2/3");
    assert!(
        seen.contains(&("remote-0".into(), "disagreed".into())),
        "{seen:?}"
    );

    // Counted per perspective (at least: the recorder is the process's, and
    // other tests here have perspectives of the same names).
    let metrics = kiln_tests::metrics::scrape(&admin.to_string()).await;
    let count = |perspective: &str, result: &str| -> f64 {
        let labels = [("perspective", perspective), ("result", result)];
        metrics
            .values("kiln_mpic_perspective_results_total", &labels)
            .iter()
            .sum()
    };
    assert!(count("remote-2", "disagreed") >= 1.0);
    assert!(count("remote-0", "disagreed") >= 1.0);
    assert!(count("remote-1", "corroborated") >= 3.0);
    kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_disagreeing_make_the_challenge_invalid_and_are_named() {
    let world = World::start().await;
    let kiln = world.kiln(|_| {}).await;
    // remote-1 sees another TXT value; remote-2 a CAA record for another CA.
    world.remotes[2]
        .set_caa("hijack.test", false, "issue", "other-ca.example")
        .await;
    let (_, id, outcome) = world.order(&kiln, "hijack.test", &[0, 2]).await;
    let problem = refusal(outcome);
    assert_eq!(problem.r#type.as_deref(), UNAUTHORIZED);
    let named = subproblem_details(&problem);
    assert_eq!(named.len(), 2, "{named:?}");
    assert!(named[0].starts_with("perspective remote-1:"), "{named:?}");
    assert!(named[1].starts_with("perspective remote-2:"), "{named:?}");
    assert!(
        named[1].contains("other-ca.example"),
        "what it saw: {named:?}"
    );
    assert_eq!(results(&kiln, &id).await.0, "1/3");
    kiln.kiln.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http01_address_seen_elsewhere_by_one_is_outvoted() {
    let world = World::start().await;
    let kiln = world.kiln(|_| {}).await;
    let name = "address.test";
    let here = IpAddr::V4(Ipv4Addr::LOCALHOST);
    world.primary.set_a(name, here).await;
    world.remotes[0].set_a(name, here).await;
    world.remotes[1].set_a(name, here).await;
    // Nothing answers http-01 on 127.0.0.2.
    world.remotes[2]
        .set_a(name, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .await;
    let account = account(&kiln).await;
    let mut order = new_order(&account, &[name]).await;
    let mut authzs = order.authorizations();
    let mut authz = authzs.next().await.unwrap().unwrap();
    let mut challenge = authz.challenge(ChallengeType::Http01).unwrap();
    kiln.http01
        .set(&challenge.token, challenge.key_authorization().as_str());
    let id = challenge.url.rsplit('/').next().unwrap().to_string();
    challenge.set_ready().await.unwrap();
    assert_eq!(
        order.poll_ready(&retry()).await.unwrap(),
        OrderStatus::Ready
    );
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
    let kiln = world
        .kiln(move |c| {
            c.mpic.perspectives[0] = format!("remote-0={silent}").parse().unwrap();
            c.mpic.deadline = Some(Duration::from_secs(2));
        })
        .await;

    // With the other two agreeing, one silent perspective is outvoted.
    let (_, id, ready) = world.order(&kiln, "quiet.test", &[1, 2]).await;
    assert_eq!(ready.expect("ready"), OrderStatus::Ready);
    assert_eq!(results(&kiln, &id).await.0, "2/3");

    // With one of them disagreeing too, the quorum fails, naming both.
    let (_, _, outcome) = world.order(&kiln, "quiet-and-off.test", &[1]).await;
    let named = subproblem_details(&refusal(outcome));
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
    let kiln = world
        .kiln(|c| c.mpic.enforcement = mpic::quorum::Enforcement::ObserveOnly)
        .await;
    let (_, id, ready) = world.order(&kiln, "observed.test", &[0]).await;
    assert_eq!(ready.expect("not blocked"), OrderStatus::Ready);
    assert_eq!(
        results(&kiln, &id).await.0,
        "1/3",
        "the failure is recorded"
    );
    kiln.kiln.shutdown().await;
}

/// The finalize-time CAA recheck is corroborated too: a CAA record that
/// appears after validation at one remote is outvoted, at two it refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caa_recheck_at_finalize_is_corroborated() {
    let world = World::start().await;
    // Every finalize rechecks CAA.
    let kiln = world.kiln(|c| c.caa_recheck_after = Duration::ZERO).await;
    for (name, forbidding, issued) in [
        ("recheck-one.test", 1, true),
        ("recheck-two.test", 2, false),
    ] {
        let (mut order, _, ready) = world.order(&kiln, name, &[0, 1, 2]).await;
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
        let outcome = order.poll_certificate(&retry()).await;
        let order_id = order.url().rsplit('/').next().unwrap().to_string();
        let (verdict, _) = results(&kiln, &store::caa_recheck_subject(&order_id)).await;
        if issued {
            outcome.expect("issued despite one");
            assert_eq!(verdict, "2/3", "{name}");
            continue;
        }
        let problem = refusal(outcome);
        assert_eq!(
            problem.r#type.as_deref(),
            Some("urn:ietf:params:acme:error:caa")
        );
        let named = subproblem_details(&problem);
        assert_eq!(named.len(), 2, "{named:?}");
        assert!(named[0].starts_with("perspective remote-0:"), "{named:?}");
        assert!(named[0].contains("other-ca.example"), "{named:?}");
        assert_eq!(verdict, "1/3", "{name}");
    }
    kiln.kiln.shutdown().await;
}
