//! Issuance correctness (issue 4): what a CA must never do, shown end to
//! end through an in-process Kiln with real ACME (instant-acme), a real DNS
//! server on loopback and the fake CT logs.
//!
//! - CAA at validation time (allow, forbid, `issuewild`, critical unknown
//!   tag, `accounturi`, `validationmethods`, tree climbing, SERVFAIL) and
//!   at finalize (stale authorizations rechecked, fresh ones not).
//! - SCT embedding and the CT policy, with logs down, coming back, or gone
//!   past the finalize deadline; final certificates also logged.
//! - pkilint finds no error in leaves with RSA-2048, P-256 and P-384 keys,
//!   nor in the `tlsserver` and `shortlived` profiles' leaves.

use dns::testing::TestDnsServer;
use instant_acme::{
    Account, AuthorizationStatus, Identifier, Order, OrderStatus, Problem, RetryPolicy,
};
use kiln_tests::instant::{account, answer_dns01, answer_http01, new_order};
use kiln_tests::{
    TestKiln, csr_der, csr_der_with_key, has_poison, parse_chain, san_names, serial_hex,
};
use openssl::pkey::{PKey, Private};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CAA_TYPE: &str = "urn:ietf:params:acme:error:caa";
const DNS_TYPE: &str = "urn:ietf:params:acme:error:dns";
const SERVER_INTERNAL_TYPE: &str = "urn:ietf:params:acme:error:serverInternal";

// ---- helpers ----------------------------------------------------------------

/// The order's id, the last segment of its URL (`…/acme/order/{id}`).
fn order_id(order: &Order) -> String {
    order.url().rsplit('/').next().unwrap().to_string()
}

fn retry(timeout: Duration) -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(50))
        .backoff(1.5)
        .timeout(timeout)
}

/// One authorization's outcome: the identifier as shown (`*.` for a
/// wildcard), its status and its challenge's error.
#[derive(Debug)]
struct AuthzOutcome {
    identifier: String,
    status: AuthorizationStatus,
    error: Option<Problem>,
}

/// Polls every authorization until it is no longer pending.
async fn authz_outcomes(order: &mut Order) -> Vec<AuthzOutcome> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz.expect("authorization");
        while authz.status == AuthorizationStatus::Pending {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "authorization still pending"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            authz.refresh().await.expect("authorization refresh");
        }
        out.push(AuthzOutcome {
            identifier: authz.identifier().to_string(),
            status: authz.status,
            error: authz.challenges.iter().find_map(|c| c.error.clone()),
        });
    }
    out
}

/// Polls the order until it is `valid` or `invalid` and returns which;
/// panics after `timeout`.
async fn settle(order: &mut Order, timeout: Duration) -> OrderStatus {
    let start = Instant::now();
    loop {
        let status = order.refresh().await.expect("order refresh").status;
        if matches!(status, OrderStatus::Valid | OrderStatus::Invalid) {
            return status;
        }
        assert!(
            start.elapsed() < timeout,
            "order still {status:?} after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Authorizes with http-01, finalizes with `csr` and returns the PEM chain.
async fn issue_http01(kiln: &TestKiln, account: &Account, names: &[&str], csr: &[u8]) -> String {
    issue_http01_in(kiln, account, names, csr, None).await
}

/// [`issue_http01`] in a certificate profile (`None`: the default).
async fn issue_http01_in(
    kiln: &TestKiln,
    account: &Account,
    names: &[&str],
    csr: &[u8],
    profile: Option<&str>,
) -> String {
    let ids: Vec<Identifier> = names
        .iter()
        .map(|n| Identifier::Dns(n.to_string()))
        .collect();
    let mut new = instant_acme::NewOrder::new(&ids);
    if let Some(profile) = profile {
        new = new.profile(profile);
    }
    let mut order = account.new_order(&new).await.expect("order created");
    answer_http01(&mut order, &kiln.http01).await;
    assert_eq!(
        order
            .poll_ready(&retry(Duration::from_secs(30)))
            .await
            .unwrap(),
        OrderStatus::Ready
    );
    order.finalize_csr(csr).await.expect("finalize accepted");
    order
        .poll_certificate(&retry(Duration::from_secs(30)))
        .await
        .expect("certificate issued")
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

// ---- CAA at validation time ---------------------------------------------------

/// What a validation-time CAA case must end in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Every authorization valid, and the order is issued.
    Issued,
    /// The authorization of this identifier invalid with a problem of this
    /// type whose detail mentions this text; no certificate.
    Refused(&'static str, &'static str, &'static str),
}

struct CaaCase {
    label: &'static str,
    names: &'static [&'static str],
    /// `(name, critical, tag, value)`; `{acct}` in a value becomes the
    /// account URL.
    records: &'static [(&'static str, bool, &'static str, &'static str)],
    servfail: &'static [&'static str],
    expect: Expect,
}

const CAA_CASES: &[CaaCase] = &[
    CaaCase {
        label: "allow, also by climbing from www",
        names: &["allow.test", "www.allow.test"],
        records: &[("allow.test", false, "issue", "kiln.test")],
        servfail: &[],
        expect: Expect::Issued,
    },
    CaaCase {
        label: "forbid: another CA",
        names: &["forbid.test"],
        records: &[("forbid.test", false, "issue", "other-ca.test")],
        servfail: &[],
        expect: Expect::Refused("forbid.test", CAA_TYPE, "another CA"),
    },
    CaaCase {
        label: "malformed issue value forbids",
        names: &["malformed.test"],
        records: &[("malformed.test", false, "issue", "kiln..test")],
        servfail: &[],
        expect: Expect::Refused("malformed.test", CAA_TYPE, "malformed"),
    },
    CaaCase {
        label: "issuewild allows the wildcard though issue names another CA",
        names: &["*.wild.test"],
        records: &[
            ("wild.test", false, "issuewild", "kiln.test"),
            ("wild.test", false, "issue", "other-ca.test"),
        ],
        servfail: &[],
        expect: Expect::Issued,
    },
    CaaCase {
        label: "issuewild forbids the wildcard, issue allows the base name",
        names: &["nowild.test", "*.nowild.test"],
        records: &[
            ("nowild.test", false, "issuewild", "other-ca.test"),
            ("nowild.test", false, "issue", "kiln.test"),
        ],
        servfail: &[],
        expect: Expect::Refused("*.nowild.test", CAA_TYPE, "issuewild"),
    },
    CaaCase {
        label: "critical unknown tag",
        names: &["critical.test"],
        records: &[
            ("critical.test", true, "tbs", "unknown"),
            ("critical.test", false, "issue", "kiln.test"),
        ],
        servfail: &[],
        expect: Expect::Refused("critical.test", CAA_TYPE, "critical"),
    },
    CaaCase {
        label: "accounturi names this account",
        names: &["acct-ok.test"],
        records: &[(
            "acct-ok.test",
            false,
            "issue",
            "kiln.test; accounturi={acct}",
        )],
        servfail: &[],
        expect: Expect::Issued,
    },
    CaaCase {
        label: "accounturi names another account",
        names: &["acct-other.test"],
        records: &[(
            "acct-other.test",
            false,
            "issue",
            "kiln.test; accounturi={acct}-someone-else",
        )],
        servfail: &[],
        expect: Expect::Refused("acct-other.test", CAA_TYPE, "another account"),
    },
    CaaCase {
        label: "validationmethods allows dns-01",
        names: &["vm-ok.test"],
        records: &[(
            "vm-ok.test",
            false,
            "issue",
            "kiln.test; validationmethods=http-01,dns-01",
        )],
        servfail: &[],
        expect: Expect::Issued,
    },
    CaaCase {
        label: "validationmethods excludes dns-01",
        names: &["vm-no.test"],
        records: &[(
            "vm-no.test",
            false,
            "issue",
            "kiln.test; validationmethods=http-01",
        )],
        servfail: &[],
        expect: Expect::Refused("vm-no.test", CAA_TYPE, "dns-01"),
    },
    CaaCase {
        label: "tree climbing: CAA only on the parent forbids",
        names: &["www.sub.climb.test"],
        records: &[("climb.test", false, "issue", "other-ca.test")],
        servfail: &[],
        expect: Expect::Refused("www.sub.climb.test", CAA_TYPE, "climb.test"),
    },
    CaaCase {
        label: "SERVFAIL on the way up is a dns problem, never 'no CAA'",
        names: &["www.servfail.test"],
        records: &[],
        servfail: &["servfail.test"],
        expect: Expect::Refused("www.servfail.test", DNS_TYPE, "SERVFAIL"),
    },
];

async fn run_caa_case(kiln: &TestKiln, dns: &TestDnsServer, account: &Account, case: &CaaCase) {
    for (name, critical, tag, value) in case.records {
        let value = value.replace("{acct}", account.id());
        dns.set_caa(name, *critical, tag, &value).await;
    }
    for name in case.servfail {
        dns.set_servfail(name);
    }
    let mut order = new_order(account, case.names).await;
    let id = order_id(&order);
    answer_dns01(&mut order, dns).await;
    let outcomes = authz_outcomes(&mut order).await;
    let label = case.label;
    match case.expect {
        Expect::Issued => {
            for o in &outcomes {
                assert_eq!(o.status, AuthorizationStatus::Valid, "{label}: {o:?}");
            }
            assert_eq!(
                order
                    .poll_ready(&retry(Duration::from_secs(20)))
                    .await
                    .unwrap(),
                OrderStatus::Ready,
                "{label}"
            );
            order.finalize_csr(&csr_der(case.names)).await.unwrap();
            let pem = order
                .poll_certificate(&retry(Duration::from_secs(30)))
                .await
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            let mut want: Vec<String> = case.names.iter().map(|n| n.to_string()).collect();
            want.sort();
            assert_eq!(san_names(&parse_chain(&pem)[0]), want, "{label}");
        }
        Expect::Refused(identifier, problem_type, mention) => {
            for o in &outcomes {
                if o.identifier != identifier {
                    continue;
                }
                assert_eq!(o.status, AuthorizationStatus::Invalid, "{label}: {o:?}");
                let err = o
                    .error
                    .as_ref()
                    .unwrap_or_else(|| panic!("{label}: no error"));
                assert_eq!(err.r#type.as_deref(), Some(problem_type), "{label}: {err}");
                let detail = err.detail.as_deref().unwrap_or_default();
                assert!(detail.contains(mention), "{label}: {detail}");
                assert!(detail.contains(identifier), "{label}: {detail}");
            }
            assert!(
                outcomes.iter().any(|o| o.identifier == identifier),
                "{label}: no authorization for {identifier}: {outcomes:?}"
            );
            // The order is dead, finalizing is refused, nothing was signed.
            let state = order.refresh().await.unwrap();
            assert_eq!(state.status, OrderStatus::Invalid, "{label}");
            assert!(
                order.finalize_csr(&csr_der(case.names)).await.is_err(),
                "{label}: finalize accepted"
            );
            let certs = kiln.kiln.store.certificates_for_order(&id).await.unwrap();
            assert!(certs.is_empty(), "{label}: certificates {certs:?}");
            // A DNS failure was retried (three attempts) before it counted.
            for name in case.servfail {
                let asked = caa_queries_since(dns, 0)
                    .iter()
                    .filter(|n| n == name)
                    .count();
                assert!(asked >= 3, "{label}: {name} asked {asked} times");
            }
        }
    }
}

/// Every validation-time CAA case through Kiln with dns-01: the
/// authorization ends with the right problem and nothing is signed, or the
/// order is issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caa_at_validation_time() {
    let dns = TestDnsServer::start().await;
    let kiln = TestKiln::start(Some(dns.addr())).await;
    let account = account(&kiln).await;
    join_all(
        CAA_CASES
            .iter()
            .map(|case| run_caa_case(&kiln, &dns, &account, case)),
    )
    .await;
    kiln.kiln.shutdown().await;
}

/// `join_all` without a futures dependency: runs the futures concurrently
/// on this task until all are done.
async fn join_all<F: std::future::Future<Output = ()>>(futures: impl IntoIterator<Item = F>) {
    let mut slots: Vec<Option<std::pin::Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    std::future::poll_fn(|cx| {
        for slot in slots.iter_mut() {
            if let Some(f) = slot
                && f.as_mut().poll(cx).is_ready()
            {
                *slot = None;
            }
        }
        if slots.iter().all(Option::is_none) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

// ---- CAA at finalize ---------------------------------------------------------------

/// An order for `names`, every authorization validated with dns-01.
async fn ready_dns01(account: &Account, dns: &TestDnsServer, names: &[&str]) -> Order {
    let mut order = new_order(account, names).await;
    answer_dns01(&mut order, dns).await;
    assert_eq!(
        order
            .poll_ready(&retry(Duration::from_secs(20)))
            .await
            .unwrap(),
        OrderStatus::Ready
    );
    order
}

/// The names asked for CAA since the query log had `mark` entries.
fn caa_queries_since(dns: &TestDnsServer, mark: usize) -> Vec<String> {
    dns.queries()[mark..]
        .iter()
        .filter(|q| q.qtype == "CAA")
        .map(|q| q.name.clone())
        .collect()
}

/// With a recheck window of zero every authorization is stale at finalize.
/// Three names, CAA changed after validation to forbid only the third: the
/// order ends `invalid` with `caa`, and its subproblems name exactly the
/// third. Each of the three names was looked up (Let's Encrypt's 2020 bug
/// checked one name N times instead of N names).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_authorizations_are_rechecked_and_the_forbidden_name_is_named() {
    let dns = TestDnsServer::start().await;
    let kiln = TestKiln::start_with(Some(dns.addr()), |c| {
        c.caa_recheck_after = Duration::ZERO;
    })
    .await;
    let account = account(&kiln).await;
    let names = [
        "one.recheck-a.test",
        "two.recheck-b.test",
        "three.recheck-c.test",
    ];
    for parent in ["recheck-a.test", "recheck-b.test", "recheck-c.test"] {
        dns.set_caa(parent, false, "issue", "kiln.test").await;
    }
    let mut order = ready_dns01(&account, &dns, &names).await;

    // After validation, the third name's zone changes hands.
    dns.remove("recheck-c.test").await;
    dns.set_caa("recheck-c.test", false, "issue", "other-ca.test")
        .await;
    let mark = dns.queries().len();
    order.finalize_csr(&csr_der(&names)).await.unwrap();
    assert_eq!(
        settle(&mut order, Duration::from_secs(30)).await,
        OrderStatus::Invalid
    );
    let error = order.state().error.clone().expect("order.error");
    assert_eq!(error.r#type.as_deref(), Some(CAA_TYPE), "{error}");
    assert_eq!(error.subproblems.len(), 1, "{error}");
    let sub = &error.subproblems[0];
    assert_eq!(
        sub.identifier,
        Some(Identifier::Dns("three.recheck-c.test".into())),
        "{error}"
    );
    assert_eq!(sub.r#type.as_deref(), Some(CAA_TYPE), "{error}");
    assert!(
        sub.detail
            .as_deref()
            .unwrap_or_default()
            .contains("recheck-c.test"),
        "{error}"
    );
    let asked = caa_queries_since(&dns, mark);
    for name in names {
        assert!(
            asked.iter().any(|a| a == name),
            "{name} not rechecked: {asked:?}"
        );
    }
    let certs = kiln
        .kiln
        .store
        .certificates_for_order(&order_id(&order))
        .await
        .unwrap();
    assert!(certs.is_empty(), "nothing signed: {certs:?}");
    kiln.kiln.shutdown().await;
}

/// With the default window (7 hours) an authorization validated a moment
/// ago is not looked up again: no CAA query after finalize, and a CAA change
/// after validation does not stop issuance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_authorizations_are_not_rechecked() {
    let dns = TestDnsServer::start().await;
    let kiln = TestKiln::start(Some(dns.addr())).await;
    let account = account(&kiln).await;
    let names = ["fresh-caa.test", "www.fresh-caa.test"];
    let mut order = ready_dns01(&account, &dns, &names).await;
    dns.set_caa("fresh-caa.test", false, "issue", "other-ca.test")
        .await;
    let mark = dns.queries().len();
    order.finalize_csr(&csr_der(&names)).await.unwrap();
    assert_eq!(
        settle(&mut order, Duration::from_secs(30)).await,
        OrderStatus::Valid
    );
    let asked = caa_queries_since(&dns, mark);
    assert!(asked.is_empty(), "CAA looked up at finalize: {asked:?}");
    kiln.kiln.shutdown().await;
}

/// A DNS failure at recheck is retried with backoff: a SERVFAIL that clears
/// lets the order through; one that persists ends it `invalid` with `dns`
/// naming the identifier, after several attempts spread over time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_failure_at_recheck_is_retried_then_fails_with_dns() {
    let dns = TestDnsServer::start().await;
    let kiln = TestKiln::start_with(Some(dns.addr()), |c| {
        c.caa_recheck_after = Duration::ZERO;
    })
    .await;
    let account = account(&kiln).await;
    let persist = "sf-persist.test";
    let recover = "sf-recover.test";
    let mut failing = ready_dns01(&account, &dns, &[persist]).await;
    let mut passing = ready_dns01(&account, &dns, &[recover]).await;
    dns.set_servfail(persist);
    dns.set_servfail(recover);
    let mark = dns.queries().len();
    let started = Instant::now();
    failing.finalize_csr(&csr_der(&[persist])).await.unwrap();
    passing.finalize_csr(&csr_der(&[recover])).await.unwrap();

    // The transient one: once its first attempt failed, DNS recovers.
    let waited = Instant::now();
    while !caa_queries_since(&dns, mark).iter().any(|n| n == recover) {
        assert!(waited.elapsed() < Duration::from_secs(10), "never asked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    dns.clear_servfail(recover);
    assert_eq!(
        settle(&mut passing, Duration::from_secs(30)).await,
        OrderStatus::Valid
    );

    assert_eq!(
        settle(&mut failing, Duration::from_secs(30)).await,
        OrderStatus::Invalid
    );
    let took = started.elapsed();
    let error = failing.state().error.clone().expect("order.error");
    assert_eq!(error.r#type.as_deref(), Some(DNS_TYPE), "{error}");
    assert_eq!(error.subproblems.len(), 1, "{error}");
    assert_eq!(
        error.subproblems[0].identifier,
        Some(Identifier::Dns(persist.into()))
    );
    let attempts = caa_queries_since(&dns, mark)
        .iter()
        .filter(|n| *n == persist)
        .count();
    assert!(attempts >= 4, "retried: {attempts} CAA queries");
    // Backoff 250 ms, 500 ms, 1 s between the four attempts.
    assert!(took >= Duration::from_millis(1700), "no backoff: {took:?}");
    kiln.kiln.shutdown().await;
}

// ---- Certificate Transparency ------------------------------------------------------

/// Turns a fake log's knobs through its HTTP API, as an operator would.
async fn knobs(kiln: &TestKiln, log: usize, update: serde_json::Value) {
    let url = format!("{}/knobs", kiln.kiln.ct_logs[log].log.url);
    let resp = reqwest::Client::new()
        .post(url)
        .json(&update)
        .send()
        .await
        .expect("knobs");
    assert!(resp.status().is_success(), "{}", resp.status());
}

/// The SCTs of a final certificate, each matched to the configured log that
/// signed it and verified over the precertificate entry.
fn verified_scts(kiln: &TestKiln, leaf_der: &[u8], issuer_der: &[u8]) -> Vec<(usize, ct::Sct)> {
    let scts = ct::scts_from_certificate(leaf_der).expect("SCT list");
    let tbs = ct::tbs_without_extension(leaf_der, ct::SCT_LIST_OID).unwrap();
    let key_hash = ct::issuer_key_hash(issuer_der).unwrap();
    scts.into_iter()
        .map(|sct| {
            let index = kiln
                .kiln
                .ct_logs
                .iter()
                .position(|l| ct::log_id(&l.log.public_key_der) == sct.log_id)
                .expect("SCT from a configured log");
            let key = &kiln.kiln.ct_logs[index].log.public_key_der;
            let precert_entry =
                ct::precert_signed_data(sct.timestamp, &key_hash, &tbs, &sct.extensions).unwrap();
            ct::verify_sct(&sct, key, &precert_entry).expect("SCT verifies as a precert entry");
            // And not as an x509 entry: the log signed the precertificate.
            let x509_entry =
                ct::x509_signed_data(sct.timestamp, leaf_der, &sct.extensions).unwrap();
            assert!(ct::verify_sct(&sct, key, &x509_entry).is_err());
            (index, sct)
        })
        .collect()
}

fn min_scts() -> usize {
    kiln::EmbeddedConfig::new("unused").ct_policy.min_scts
}

fn x509_accepted(kiln: &TestKiln) -> Vec<u64> {
    kiln.kiln
        .ct_logs
        .iter()
        .map(|l| l.fake.submissions().accepted_x509)
        .collect()
}

/// Polls until `check` holds for the fake logs, or panics after 10 s.
async fn wait_for_logs(kiln: &TestKiln, what: &str, check: impl Fn(&TestKiln) -> bool) {
    let start = Instant::now();
    while !check(kiln) {
        assert!(start.elapsed() < Duration::from_secs(10), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Exactly the policy's number of SCTs, each verifying against its log's
/// key as a precertificate entry, from distinct logs and operators, stamped
/// within a minute of issuance; no poison; the final certificate's TBS is
/// the precertificate's. The final certificate is then logged with every
/// log (add-chain), best effort: a log refusing it changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_scts_follow_the_policy_and_final_certificates_are_logged() {
    let kiln = TestKiln::start(None).await;
    let account = account(&kiln).await;
    let before = unix_ms();
    let names = ["sct.kiln-e2e.test"];
    let pem = issue_http01(&kiln, &account, &names, &csr_der(&names)).await;
    let after = unix_ms();
    let chain = parse_chain(&pem);
    let leaf = chain[0].to_der().unwrap();
    let issuer = chain[1].to_der().unwrap();
    assert!(!has_poison(&leaf), "final certificate carries the poison");

    let scts = verified_scts(&kiln, &leaf, &issuer);
    assert_eq!(scts.len(), min_scts(), "exactly the policy's count");
    let mut logs: Vec<usize> = scts.iter().map(|(i, _)| *i).collect();
    logs.sort();
    logs.dedup();
    assert_eq!(logs.len(), scts.len(), "one SCT per log");
    let operators: std::collections::BTreeSet<&str> = logs
        .iter()
        .map(|&i| kiln.kiln.ct_logs[i].log.operator.as_str())
        .collect();
    assert!(operators.len() >= 2, "{operators:?}");
    let not_before = chain[0].not_before();
    let epoch = openssl::asn1::Asn1Time::from_unix(0).unwrap();
    let diff = epoch.diff(not_before).unwrap();
    let not_before_ms = (i64::from(diff.days) * 86_400 + i64::from(diff.secs)) as u64 * 1000;
    for (_, sct) in &scts {
        assert!(
            sct.timestamp + 1000 >= before && sct.timestamp <= after + 1000,
            "SCT at {} outside [{before}, {after}]",
            sct.timestamp
        );
        // notBefore is backdated a minute from issuance.
        assert!(
            sct.timestamp.abs_diff(not_before_ms + 60_000) <= 60_000,
            "SCT {} vs notBefore {not_before_ms}",
            sct.timestamp
        );
    }
    let record = kiln
        .kiln
        .store
        .certificate(&serial_hex(&chain[0]))
        .await
        .unwrap()
        .unwrap();
    let precert = record.precert_der.expect("precertificate recorded");
    assert!(ct::tbs_matches_precert(&leaf, &precert).unwrap());

    // The final certificate reaches every log as an x509 entry.
    wait_for_logs(&kiln, "final certificate logged everywhere", |k| {
        x509_accepted(k) == [1, 1, 1]
    })
    .await;
    // The accepted count grew by those x509 entries on top of the
    // precertificate entries behind the embedded SCTs.
    for (i, log) in kiln.kiln.ct_logs.iter().enumerate() {
        let stats = log.fake.submissions();
        let precerts = stats.accepted - stats.accepted_x509;
        if logs.contains(&i) {
            assert!(precerts >= 1, "log {i}: {stats:?}");
        }
    }

    // Best effort: a log refusing the name costs only its own entry.
    let refused = "refused.kiln-e2e.test";
    knobs(&kiln, 0, serde_json::json!({ "reject_names": [refused] })).await;
    let pem = issue_http01(&kiln, &account, &[refused], &csr_der(&[refused])).await;
    let leaf = parse_chain(&pem)[0].to_der().unwrap();
    assert!(
        verified_scts(&kiln, &leaf, &issuer)
            .iter()
            .all(|(i, _)| *i != 0)
    );
    wait_for_logs(&kiln, "final certificate logged by the others", |k| {
        x509_accepted(k) == [1, 2, 2]
    })
    .await;
    assert!(kiln.kiln.ct_logs[0].fake.submissions().rejected >= 1);
    kiln.kiln.shutdown().await;
}

/// One of three logs down: every order is still issued, with SCTs from the
/// other two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_log_down_every_order_is_valid() {
    let kiln = TestKiln::start(None).await;
    let account = account(&kiln).await;
    knobs(&kiln, 0, serde_json::json!({ "down": true })).await;
    let leaves = std::sync::Mutex::new(Vec::new());
    join_all((0..10).map(|i| {
        let (kiln, account, leaves) = (&kiln, &account, &leaves);
        async move {
            let name = format!("down{i}.kiln-e2e.test");
            let names = [name.as_str()];
            let pem = issue_http01(kiln, account, &names, &csr_der(&names)).await;
            leaves.lock().unwrap().push(parse_chain(&pem));
        }
    }))
    .await;
    let leaves = leaves.into_inner().unwrap();
    assert_eq!(leaves.len(), 10, "every order valid");
    for chain in &leaves {
        let scts = verified_scts(
            &kiln,
            &chain[0].to_der().unwrap(),
            &chain[1].to_der().unwrap(),
        );
        assert_eq!(scts.len(), min_scts());
        assert!(scts.iter().all(|(i, _)| *i != 0), "SCT from the down log");
    }
    assert!(kiln.kiln.ct_logs[0].fake.submissions().unavailable >= 1);
    kiln.kiln.shutdown().await;
}

/// A finalized order, authorized with http-01, and its id.
async fn finalized(kiln: &TestKiln, account: &Account, name: &str) -> Order {
    let mut order = new_order(account, &[name]).await;
    answer_http01(&mut order, &kiln.http01).await;
    assert_eq!(
        order
            .poll_ready(&retry(Duration::from_secs(20)))
            .await
            .unwrap(),
        OrderStatus::Ready
    );
    order.finalize_csr(&csr_der(&[name])).await.unwrap();
    order
}

fn unavailable(kiln: &TestKiln) -> u64 {
    kiln.kiln
        .ct_logs
        .iter()
        .map(|l| l.fake.submissions().unavailable)
        .sum()
}

/// Every log down: orders wait in `processing` and keep retrying; when logs
/// come back before the finalize deadline, they end `valid`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_logs_down_orders_wait_then_issue_when_logs_return() {
    let kiln = TestKiln::start(None).await;
    let account = account(&kiln).await;
    for log in 0..3 {
        knobs(&kiln, log, serde_json::json!({ "down": true })).await;
    }
    let mut orders = Vec::new();
    for i in 0..2 {
        orders.push(finalized(&kiln, &account, &format!("wait{i}.kiln-e2e.test")).await);
    }
    // Eight seconds of outage: attempt after attempt fails, the orders stay
    // processing.
    let mut seen = Vec::new();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(2700)).await;
        seen.push(unavailable(&kiln));
        for order in &mut orders {
            let status = order.refresh().await.unwrap().status;
            assert_eq!(status, OrderStatus::Processing);
        }
    }
    assert!(
        seen[0] > 0 && seen.windows(2).all(|w| w[1] > w[0]),
        "retries keep coming: {seen:?}"
    );

    // Two operators' logs come back (the policy needs two); the third stays
    // down. Retries pause at most 2 s, so the orders are issued promptly
    // (an exponential backoff would by now wait another 7 s or more).
    knobs(&kiln, 0, serde_json::json!({ "down": false })).await;
    knobs(&kiln, 1, serde_json::json!({ "down": false })).await;
    let back = Instant::now();
    for order in &mut orders {
        assert_eq!(
            settle(order, Duration::from_secs(20)).await,
            OrderStatus::Valid
        );
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "valid {:?} after the logs returned",
            back.elapsed()
        );
        let pem = order.certificate().await.unwrap().expect("certificate");
        let chain = parse_chain(&pem);
        let scts = verified_scts(
            &kiln,
            &chain[0].to_der().unwrap(),
            &chain[1].to_der().unwrap(),
        );
        let mut from: Vec<usize> = scts.iter().map(|(i, _)| *i).collect();
        from.sort();
        assert_eq!(from, [0, 1]);
    }
    kiln.kiln.shutdown().await;
}

/// Every log down past the finalize deadline: the order ends `invalid` with
/// `serverInternal` saying why, at the deadline and not before; the
/// precertificate stays on record, no final certificate exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_logs_down_past_the_deadline_ends_invalid() {
    const FINALIZE_TIMEOUT: Duration = Duration::from_secs(8);
    let kiln = TestKiln::start_with(None, |c| c.finalize_timeout = FINALIZE_TIMEOUT).await;
    let account = account(&kiln).await;
    for log in 0..3 {
        knobs(&kiln, log, serde_json::json!({ "down": true })).await;
    }
    let started = Instant::now();
    let mut order = finalized(&kiln, &account, "deadline.kiln-e2e.test").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        order.refresh().await.unwrap().status,
        OrderStatus::Processing,
        "given up before the deadline"
    );
    assert_eq!(
        settle(&mut order, Duration::from_secs(20)).await,
        OrderStatus::Invalid
    );
    let took = started.elapsed();
    // At the deadline: not before, and not much after (retries pause at
    // most 2 s, then the order is ended).
    assert!(
        took >= FINALIZE_TIMEOUT - Duration::from_millis(500),
        "ended before the deadline: {took:?}"
    );
    assert!(
        took <= FINALIZE_TIMEOUT + Duration::from_secs(4),
        "ended long after the deadline: {took:?}"
    );
    let error = order.state().error.clone().expect("order.error");
    assert_eq!(
        error.r#type.as_deref(),
        Some(SERVER_INTERNAL_TYPE),
        "{error}"
    );
    let detail = error.detail.clone().unwrap_or_default();
    assert!(
        detail.contains("Certificate Transparency") && detail.contains("deadline"),
        "{detail}"
    );
    let certs = kiln
        .kiln
        .store
        .certificates_for_order(&order_id(&order))
        .await
        .unwrap();
    assert_eq!(certs.len(), 1, "{certs:?}");
    assert!(certs[0].precert_der.is_some() && certs[0].final_der.is_none());
    kiln.kiln.shutdown().await;
}

// ---- pkilint -------------------------------------------------------------------

fn pkilint() -> std::path::PathBuf {
    kiln_tests::pkilint::tool("lint_cabf_serverauth_cert")
}

/// One certificate to lint: its DER, pkilint's certificate type, a label.
struct ToLint {
    der: Vec<u8>,
    kind: &'static str,
    label: String,
}

/// Runs pkilint on every certificate (all at once), prints each report and
/// panics listing every ERROR or FATAL finding.
fn lint_all(tool: &std::path::Path, certs: &[ToLint]) {
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<_> = certs
        .iter()
        .map(|c| {
            let path = dir.path().join(format!("{}.der", c.label));
            std::fs::write(&path, &c.der).unwrap();
            std::process::Command::new(tool)
                .args([
                    "lint",
                    "-t",
                    c.kind,
                    "-s",
                    "NOTICE",
                    "--document-format",
                    "DER",
                ])
                .arg(&path)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("run pkilint")
        })
        .collect();
    let mut errors = Vec::new();
    for (cert, child) in certs.iter().zip(children) {
        let out = child.wait_with_output().expect("pkilint finished");
        let report = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!(
            "--- pkilint {} ({}) ---\n{report}{stderr}",
            cert.kind, cert.label
        );
        // The tool must have linted the document, not failed to load it.
        assert!(
            !stderr.contains("Failed to load") && !stderr.contains("Traceback"),
            "pkilint did not run on {}: {stderr}",
            cert.label
        );
        errors.extend(
            report
                .lines()
                .filter(|l| l.contains("(ERROR)") || l.contains("(FATAL)"))
                .map(|l| format!("{}: {}", cert.label, l.trim())),
        );
    }
}

/// Leaves with RSA-2048, P-256 and P-384 keys, P-256 leaves of the `tlsserver`
/// and `shortlived` profiles, and their precertificates,
/// pass pkilint's CA/B Forum TLS BR lint without an ERROR finding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkilint_finds_no_error_in_kiln_leaves() {
    let tool = pkilint();
    // Names under a public suffix and a public AIA/CRL host: pkilint rightly
    // calls `.test` names and 127.0.0.1 URLs internal, which says something
    // about the test environment, not about the profile.
    let kiln = TestKiln::start_with(None, |c| {
        c.certificate_base_url = Some("http://ca.kiln-lint.example.com".into());
    })
    .await;
    let account = account(&kiln).await;
    let p256 = || ec_key(openssl::nid::Nid::X9_62_PRIME256V1);
    // Every key type in the default profile, and the other two profiles.
    let keys: [(&str, PKey<Private>, Option<&str>); 5] = [
        (
            "rsa2048",
            PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap(),
            None,
        ),
        ("p256", p256(), None),
        ("p384", ec_key(openssl::nid::Nid::SECP384R1), None),
        ("tlsserver", p256(), Some("tlsserver")),
        ("shortlived", p256(), Some("shortlived")),
    ];
    let certs = std::sync::Mutex::new(Vec::new());
    join_all(keys.iter().map(|(label, key, profile)| {
        let (kiln, account, certs) = (&kiln, &account, &certs);
        async move {
            let name = format!("{label}.kiln-lint.example.com");
            let names = [name.as_str(), "kiln-lint.example.com"];
            let csr = csr_der_with_key(&names, key);
            let pem = issue_http01_in(kiln, account, &names, &csr, *profile).await;
            let leaf = &parse_chain(&pem)[0];
            let record = kiln
                .kiln
                .store
                .certificate(&serial_hex(leaf))
                .await
                .unwrap()
                .expect("certificate on record");
            let der = leaf.to_der().unwrap();
            assert!(!has_poison(&der));
            let mut certs = certs.lock().unwrap();
            certs.push(ToLint {
                der,
                kind: "DV-FINAL-CERTIFICATE",
                label: label.to_string(),
            });
            certs.push(ToLint {
                der: record.precert_der.expect("precertificate on record"),
                kind: "DV-PRE-CERTIFICATE",
                label: format!("{label}-precert"),
            });
        }
    }))
    .await;
    kiln.kiln.shutdown().await;
    let certs = certs.into_inner().unwrap();
    assert_eq!(certs.len(), 10);
    lint_all(&tool, &certs);
}

fn ec_key(nid: openssl::nid::Nid) -> PKey<Private> {
    let group = openssl::ec::EcGroup::from_curve_name(nid).unwrap();
    PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap()
}
