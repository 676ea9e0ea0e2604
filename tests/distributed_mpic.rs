//! Multi-perspective validation in the distributed deployment: three remote
//! perspective validators (RabbitMQ queues of their own, PostgreSQL for the
//! findings), each resolving through its own DNS server, beside the
//! primary validator; instant-acme is the client.

use dns::testing::TestDnsServer;
use instant_acme::{OrderStatus, RetryPolicy};
use kiln_tests::cluster::Cluster;
use kiln_tests::csr_der;
use kiln_tests::instant::{new_account, new_order};
use kiln_tests::perspectives::{answer_dns01_seen_by as dns01, refusal, subproblem_details};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remote_perspectives_over_rabbitmq_corroborate_or_refuse() {
    let primary = TestDnsServer::start().await;
    let mut remotes = Vec::new();
    for _ in 0..3 {
        remotes.push(TestDnsServer::start().await);
    }
    let primary_addr = primary.addr().to_string();
    let own: Vec<String> = remotes.iter().map(|r| r.addr().to_string()).collect();
    let own = own.join(" ");
    let cluster = Cluster::start(
        "mpic",
        1,
        &[
            ("KILN_DNS_SERVER", &primary_addr),
            ("KILN_PERSPECTIVES", "3"),
            ("KILN_PERSPECTIVE_DNS_SERVERS", &own),
            // Every finalize rechecks CAA, corroborated by the remotes.
            ("KILN_CAA_RECHECK_AFTER_SECS", "0"),
        ],
    )
    .await;
    let account = new_account(&cluster.root_pem_path, &cluster.directory_url, &[]).await;

    // One of three sees another TXT value: outvoted, and recorded.
    let mut order = new_order(&account, &["outvoted.cluster.test"]).await;
    let (id, ready) = dns01(&mut order, &primary, &remotes, &[0, 1]).await;
    assert_eq!(ready.expect("ready"), OrderStatus::Ready);
    let record = cluster
        .store
        .corroboration(&id)
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(record.verdict.as_deref(), Some("2/3"));
    let seen: Vec<(&str, &str)> = record
        .results
        .iter()
        .map(|r| (r.perspective.as_str(), r.result.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("remote-1", "corroborated"),
            ("remote-2", "corroborated"),
            ("remote-3", "disagreed")
        ]
    );

    // Two of three: the challenge is invalid, both named.
    let mut order = new_order(&account, &["hijacked.cluster.test"]).await;
    let (_, outcome) = dns01(&mut order, &primary, &remotes, &[0]).await;
    let named = subproblem_details(&refusal(outcome));
    assert_eq!(named.len(), 2, "{named:?}");
    assert!(named[0].starts_with("perspective remote-2:"), "{named:?}");
    assert!(named[1].starts_with("perspective remote-3:"), "{named:?}");

    // A CAA record for another CA appears at two remotes after validation:
    // the recheck at finalize is refused by the quorum.
    let name = "recheck.cluster.test";
    let mut order = new_order(&account, &[name]).await;
    let (_, ready) = dns01(&mut order, &primary, &remotes, &[0, 1, 2]).await;
    assert_eq!(ready.expect("ready"), OrderStatus::Ready);
    for remote in &remotes[1..] {
        remote
            .set_caa(name, false, "issue", "other-ca.example")
            .await;
    }
    order
        .finalize_csr(&csr_der(&[name]))
        .await
        .expect("finalize");
    let retry = RetryPolicy::new().timeout(Duration::from_secs(60));
    let outcome = order.poll_certificate(&retry).await;
    let problem = refusal(outcome);
    assert_eq!(
        problem.r#type.as_deref(),
        Some("urn:ietf:params:acme:error:caa")
    );
    let order_id = order.url().rsplit('/').next().unwrap().to_string();
    let record = cluster
        .store
        .corroboration(&store::caa_recheck_subject(&order_id))
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(record.verdict.as_deref(), Some("1/3"));
}
