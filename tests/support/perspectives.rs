//! Multi-perspective tests: a dns-01 answer that each remote perspective's
//! own DNS server shows as it should (or as a hijacker would), and the
//! perspectives a refusal names.

use dns::testing::TestDnsServer;
use instant_acme::{ChallengeType, Error, Order, OrderStatus, Problem, RetryPolicy};
use std::time::Duration;

/// Publishes the order's one dns-01 TXT at `primary` and at each remote
/// (the true value at those in `agreeing`, another elsewhere), declares the
/// challenge ready and polls the order; returns the challenge id too.
pub async fn answer_dns01_seen_by(
    order: &mut Order,
    primary: &TestDnsServer,
    remotes: &[TestDnsServer],
    agreeing: &[usize],
) -> (String, Result<OrderStatus, Error>) {
    let mut authzs = order.authorizations();
    let mut authz = authzs.next().await.expect("one").expect("authorization");
    let mut challenge = authz.challenge(ChallengeType::Dns01).expect("dns-01");
    let record = format!("_acme-challenge.{}", challenge.identifier());
    let value = challenge.key_authorization().dns_value();
    primary.set_txt(&record, &value).await;
    for (i, remote) in remotes.iter().enumerate() {
        let seen = if agreeing.contains(&i) {
            value.as_str()
        } else {
            "hijacked"
        };
        remote.set_txt(&record, seen).await;
    }
    let id = challenge.url.rsplit('/').next().unwrap().to_string();
    challenge.set_ready().await.expect("ready");
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(100))
        .timeout(Duration::from_secs(60));
    (id, order.poll_ready(&retry).await)
}

/// The problem an order failed with; panics on anything else.
pub fn refusal<T: std::fmt::Debug>(outcome: Result<T, Error>) -> Problem {
    match outcome {
        Err(Error::Api(problem)) => problem,
        other => panic!("expected the order to fail: {other:?}"),
    }
}

/// The details of a refusal's subproblems: one per perspective named.
pub fn subproblem_details(problem: &Problem) -> Vec<String> {
    problem
        .subproblems
        .iter()
        .filter_map(|p| p.detail.clone())
        .collect()
}
