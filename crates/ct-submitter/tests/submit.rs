//! Hedged CT submission against real fake logs on local ports.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ct::test_util::{CtMarker, TestCa, TestLeaf};
use ct_submitter::submit::{
    CtLog, EmbeddedSct, LogError, LogKind, SubmitError, SubmitPolicy, submit_final, submit_precert,
};
use fake_ct_log::{FakeLog, FakeLogConfig, RunningLog};

struct Fixture {
    ca: TestCa,
    leaf: TestLeaf,
    precert: Vec<u8>,
    issuer: Vec<u8>,
}

fn fixture() -> Fixture {
    let ca = TestCa::new("Submitter Test CA").unwrap();
    let leaf = TestLeaf::new(&["example.com"]).unwrap();
    let precert = leaf.precert_der(&ca).unwrap();
    let issuer = ca.der().unwrap();
    Fixture {
        ca,
        leaf,
        precert,
        issuer,
    }
}

/// Fake logs and how the submitter is configured to reach them.
struct Logs {
    running: Vec<RunningLog>,
    configured: Vec<CtLog>,
}

impl Logs {
    fn log(&self, i: usize) -> &FakeLog {
        &self.running[i].log
    }

    fn total_submissions(&self) -> u64 {
        self.running
            .iter()
            .map(|r| r.log.submissions().total())
            .sum()
    }
}

/// Starts one fake log per operator name; `tweak` adjusts each log's config.
async fn start_logs(operators: &[&str], tweak: impl Fn(usize, &mut FakeLogConfig)) -> Logs {
    let mut running = Vec::new();
    let mut configured = Vec::new();
    for (i, operator) in operators.iter().enumerate() {
        let mut config = FakeLogConfig::generate().unwrap();
        tweak(i, &mut config);
        let log = RunningLog::start(Arc::new(FakeLog::new(config).unwrap()))
            .await
            .unwrap();
        configured.push(CtLog::new(
            format!("log{i}"),
            log.url(),
            log.log.public_key_der().to_vec(),
            operator.to_string(),
        ));
        running.push(log);
    }
    Logs {
        running,
        configured,
    }
}

fn policy() -> SubmitPolicy {
    SubmitPolicy {
        stagger: Duration::from_millis(200),
        deadline: Duration::from_secs(5),
        per_request_timeout: Duration::from_secs(2),
        ..SubmitPolicy::default()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// Checks each SCT independently of the submitter: right log, right entry, distinct operators.
fn assert_valid(scts: &[EmbeddedSct], logs: &Logs, f: &Fixture) {
    let tbs = ct::tbs_without_extension(&f.precert, ct::POISON_OID).unwrap();
    let ikh = ct::issuer_key_hash(&f.issuer).unwrap();
    for s in scts {
        let log = logs
            .configured
            .iter()
            .find(|l| l.name == s.log_name)
            .unwrap();
        assert_eq!(log.operator, s.operator);
        let data = ct::precert_signed_data(s.sct.timestamp, &ikh, &tbs, &s.sct.extensions).unwrap();
        ct::verify_sct(&s.sct, &log.public_key_der, &data).unwrap();
    }
    let operators: HashSet<&str> = scts.iter().map(|s| s.operator.as_str()).collect();
    assert_eq!(operators.len(), scts.len(), "operators repeat: {scts:?}");
}

fn names(scts: &[EmbeddedSct]) -> Vec<&str> {
    let mut names: Vec<&str> = scts.iter().map(|s| s.log_name.as_str()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn all_up_yields_exactly_min_scts_from_distinct_operators() {
    let f = fixture();
    let logs = start_logs(&["A", "B", "C"], |_, _| {}).await;
    // A long stagger keeps a loaded machine from hedging into the third log.
    let policy = SubmitPolicy {
        stagger: Duration::from_secs(10),
        ..policy()
    };
    let scts = submit_precert(&client(), &logs.configured, &f.precert, &f.issuer, &policy)
        .await
        .unwrap();
    assert_eq!(scts.len(), 2);
    assert_valid(&scts, &logs, &f);
    // Two were started at once and both answered, so the third was never asked.
    assert_eq!(logs.total_submissions(), 2);

    // The SCTs embed into a final certificate that matches the precert.
    let list: Vec<ct::Sct> = scts.iter().map(|s| s.sct.clone()).collect();
    let ext = ct::encode_sct_list_extension(&list).unwrap();
    let final_der = f
        .leaf
        .build(&f.ca, CtMarker::SctList(&ext))
        .unwrap()
        .to_der()
        .unwrap();
    assert!(ct::tbs_matches_precert(&final_der, &f.precert).unwrap());
    assert_eq!(ct::scts_from_certificate(&final_der).unwrap(), list);
}

#[tokio::test]
async fn one_failing_log_is_replaced_at_once() {
    let f = fixture();
    let breakages: [fn(&mut FakeLogConfig); 3] = [
        |c| c.down = true,
        |c| c.error_rate = 1.0,
        |c| c.reject_names = vec!["example.com".into()],
    ];
    for breakage in breakages {
        let logs = start_logs(&["A", "B", "C"], |i, c| {
            if i == 0 {
                breakage(c)
            }
        })
        .await;
        // With a 10 s stagger, only an immediate replacement finishes within the deadline.
        let policy = SubmitPolicy {
            stagger: Duration::from_secs(10),
            deadline: Duration::from_secs(5),
            ..policy()
        };
        let scts = submit_precert(&client(), &logs.configured, &f.precert, &f.issuer, &policy)
            .await
            .unwrap();
        assert_eq!(names(&scts), ["log1", "log2"]);
        assert_valid(&scts, &logs, &f);
        assert_eq!(logs.log(0).submissions().accepted, 0);
        assert_eq!(logs.log(0).submissions().total(), 1);
    }
}

#[tokio::test]
async fn a_slow_log_is_hedged_on_the_stagger_tick() {
    let f = fixture();
    let logs = start_logs(&["A", "B", "C"], |i, c| {
        if i == 0 {
            c.latency = Duration::from_secs(3);
        }
    })
    .await;
    let started = Instant::now();
    let policy = SubmitPolicy {
        stagger: Duration::from_millis(100),
        ..policy()
    };
    let scts = submit_precert(&client(), &logs.configured, &f.precert, &f.issuer, &policy)
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert_eq!(names(&scts), ["log1", "log2"]);
}

#[tokio::test]
async fn all_down_fails_before_the_deadline_and_says_why() {
    let f = fixture();
    let logs = start_logs(&["A", "B", "C"], |_, c| c.down = true).await;
    let started = Instant::now();
    let err = submit_precert(
        &client(),
        &logs.configured,
        &f.precert,
        &f.issuer,
        &policy(),
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < policy().deadline);
    let SubmitError::LogsExhausted { verified, failures } = &err else {
        panic!("unexpected error {err}");
    };
    assert_eq!(*verified, 0);
    assert_eq!(failures.len(), 3);
    for failure in failures {
        assert!(
            matches!(failure.error, LogError::Status { status: 503, .. }),
            "{failure}"
        );
    }
    assert!(err.is_retryable());
    assert!(err.to_string().contains("log2 (C): HTTP 503"), "{err}");
}

#[tokio::test]
async fn slow_logs_hit_the_deadline() {
    let f = fixture();
    let logs = start_logs(&["A", "B", "C"], |_, c| c.latency = Duration::from_secs(3)).await;
    let policy = SubmitPolicy {
        stagger: Duration::from_millis(50),
        deadline: Duration::from_millis(300),
        per_request_timeout: Duration::from_secs(10),
        ..policy()
    };
    let started = Instant::now();
    let err = submit_precert(&client(), &logs.configured, &f.precert, &f.issuer, &policy)
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(1),
        "{elapsed:?}"
    );
    let SubmitError::DeadlinePassed { failures, .. } = &err else {
        panic!("unexpected error {err}");
    };
    // All three were hedged in by then and are reported as pending.
    assert_eq!(failures.len(), 3);
    assert!(
        failures
            .iter()
            .all(|f| matches!(f.error, LogError::DeadlinePassed))
    );
}

#[tokio::test]
async fn per_request_timeout_counts_as_a_failure() {
    let f = fixture();
    let logs = start_logs(&["A", "B", "C"], |i, c| {
        if i == 0 {
            c.latency = Duration::from_secs(3);
        }
    })
    .await;
    let policy = SubmitPolicy {
        stagger: Duration::from_secs(10),
        per_request_timeout: Duration::from_millis(200),
        ..policy()
    };
    let scts = submit_precert(&client(), &logs.configured, &f.precert, &f.issuer, &policy)
        .await
        .unwrap();
    assert_eq!(names(&scts), ["log1", "log2"]);
}

#[tokio::test]
async fn an_sct_that_does_not_verify_is_not_counted() {
    let f = fixture();
    let mut logs = start_logs(&["A", "B", "C"], |_, _| {}).await;
    // log0 signs with its own key, but the submitter is configured with another one.
    let impostor_key = FakeLogConfig::generate().unwrap();
    let impostor = FakeLog::new(impostor_key).unwrap();
    logs.configured[0].public_key_der = impostor.public_key_der().to_vec();

    let scts = submit_precert(
        &client(),
        &logs.configured,
        &f.precert,
        &f.issuer,
        &policy(),
    )
    .await
    .unwrap();
    assert_eq!(names(&scts), ["log1", "log2"]);
    assert_valid(&scts, &logs, &f);
    // log0 did answer with an SCT; it just was not counted.
    assert_eq!(logs.log(0).submissions().accepted, 1);

    // With only the bad log and one good one the policy cannot hold.
    let two = &logs.configured[..2];
    let err = submit_precert(&client(), two, &f.precert, &f.issuer, &policy())
        .await
        .unwrap_err();
    let SubmitError::LogsExhausted {
        verified: 1,
        failures,
    } = &err
    else {
        panic!("unexpected error {err}");
    };
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].log_name, "log0");
    assert!(
        matches!(
            failures[0].error,
            LogError::BadSct(ct::CtError::LogIdMismatch)
        ),
        "{}",
        failures[0]
    );
}

#[tokio::test]
async fn scts_from_one_operator_do_not_satisfy_the_policy() {
    let f = fixture();
    let logs = start_logs(&["A", "A", "B"], |i, c| c.down = i == 2).await;
    let err = submit_precert(
        &client(),
        &logs.configured,
        &f.precert,
        &f.issuer,
        &policy(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, SubmitError::LogsExhausted { verified: 2, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn too_few_logs_or_operators_is_a_configuration_error() {
    let f = fixture();
    let logs = start_logs(&["A", "A", "A"], |_, _| {}).await;
    for configured in [&logs.configured[..1], &logs.configured[..]] {
        let err = submit_precert(&client(), configured, &f.precert, &f.issuer, &policy())
            .await
            .unwrap_err();
        assert!(matches!(err, SubmitError::NotEnoughLogs { .. }), "{err}");
        assert!(!err.is_retryable());
    }
    assert_eq!(logs.total_submissions(), 0);

    // A certificate without the poison is refused before any log is asked.
    let logs = start_logs(&["A", "B"], |_, _| {}).await;
    let plain = f
        .leaf
        .build(&f.ca, CtMarker::None)
        .unwrap()
        .to_der()
        .unwrap();
    let err = submit_precert(&client(), &logs.configured, &plain, &f.issuer, &policy())
        .await
        .unwrap_err();
    assert!(matches!(err, SubmitError::InvalidCertificate(_)), "{err}");
    assert_eq!(logs.total_submissions(), 0);
}

#[tokio::test]
async fn final_certificates_are_logged_best_effort() {
    let f = fixture();
    let logs = start_logs(&["A", "B", "C"], |i, c| c.down = i == 1).await;
    let scts = submit_precert(
        &client(),
        &logs.configured,
        &f.precert,
        &f.issuer,
        &policy(),
    )
    .await
    .unwrap();
    let list: Vec<ct::Sct> = scts.into_iter().map(|s| s.sct).collect();
    let ext = ct::encode_sct_list_extension(&list).unwrap();
    let final_der = f
        .leaf
        .build(&f.ca, CtMarker::SctList(&ext))
        .unwrap()
        .to_der()
        .unwrap();

    let results = submit_final(
        &client(),
        &logs.configured,
        &final_der,
        &f.issuer,
        &policy(),
    )
    .await
    .unwrap();
    let outcome: Vec<(&str, bool)> = results
        .iter()
        .map(|r| (r.log_name.as_str(), r.result.is_ok()))
        .collect();
    assert_eq!(outcome, [("log0", true), ("log1", false), ("log2", true)]);
    for (r, log) in results.iter().zip(&logs.configured) {
        if let Ok(sct) = &r.result {
            let data = ct::x509_signed_data(sct.timestamp, &final_der, &sct.extensions).unwrap();
            ct::verify_sct(sct, &log.public_key_der, &data).unwrap();
        }
    }

    let err = submit_final(
        &client(),
        &logs.configured,
        &f.precert,
        &f.issuer,
        &policy(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SubmitError::PrecertificateGiven), "{err}");
}

/// A final certificate's SCT is a receipt that is never embedded: one signed
/// with a key other than the configured one still counts as logged (only
/// precertificate SCTs are verified, `an_sct_that_does_not_verify_is_not_counted`).
#[tokio::test]
async fn a_final_certificates_receipt_is_not_verified() {
    let f = fixture();
    let mut logs = start_logs(&["A", "B"], |_, _| {}).await;
    let impostor = FakeLog::new(FakeLogConfig::generate().unwrap()).unwrap();
    logs.configured[0].public_key_der = impostor.public_key_der().to_vec();
    let final_der = f
        .leaf
        .build(&f.ca, CtMarker::SctList(&[]))
        .unwrap()
        .to_der()
        .unwrap();

    let results = submit_final(
        &client(),
        &logs.configured,
        &final_der,
        &f.issuer,
        &policy(),
    )
    .await
    .unwrap();
    assert!(results.iter().all(|r| r.result.is_ok()), "{results:?}");
    assert_eq!(logs.log(0).submissions().accepted, 1);
}

/// Chrome's policy: at least one SCT from an RFC 6962 log. With the static-ct
/// logs listed (and answering) first, the RFC 6962 one is still asked at once
/// and its SCT is among those embedded.
#[tokio::test]
async fn an_rfc6962_sct_is_always_among_them() {
    let f = fixture();
    let mut logs = start_logs(&["A", "B", "C"], |_, _| {}).await;
    logs.configured[0].kind = LogKind::StaticCt;
    logs.configured[1].kind = LogKind::StaticCt;
    let policy = SubmitPolicy {
        stagger: Duration::from_secs(10),
        ..policy()
    };
    let scts = submit_precert(&client(), &logs.configured, &f.precert, &f.issuer, &policy)
        .await
        .unwrap();
    assert_eq!(scts.len(), 2);
    assert!(names(&scts).contains(&"log2"), "{:?}", names(&scts));
    assert_valid(&scts, &logs, &f);

    // The RFC 6962 log refuses: two static-ct SCTs do not make the policy.
    logs.log(2)
        .update_knobs(fake_ct_log::KnobsUpdate {
            reject_names: Some(vec!["example.com".into()]),
            ..Default::default()
        })
        .unwrap();
    let err = submit_precert(&client(), &logs.configured, &f.precert, &f.issuer, &policy)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SubmitError::LogsExhausted { verified: 2, .. }),
        "{err}"
    );
    assert!(err.is_retryable());

    // Static-ct only: refused before any log is asked.
    let before = logs.total_submissions();
    let err = submit_precert(
        &client(),
        &logs.configured[..2],
        &f.precert,
        &f.issuer,
        &policy,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SubmitError::NotEnoughLogs { .. }), "{err}");
    assert_eq!(logs.total_submissions(), before);
}

/// A certificate valid for more than 180 days needs three SCTs.
#[tokio::test]
async fn long_lived_certificates_get_three_scts() {
    let ca = TestCa::new("Submitter Test CA").unwrap();
    let mut leaf = TestLeaf::new(&["example.com"]).unwrap();
    leaf.validity_days = 200;
    let precert = leaf.precert_der(&ca).unwrap();
    let issuer = ca.der().unwrap();
    let logs = start_logs(&["A", "B", "C", "D"], |_, _| {}).await;
    let policy = SubmitPolicy {
        stagger: Duration::from_secs(10),
        ..policy()
    };
    let scts = submit_precert(&client(), &logs.configured, &precert, &issuer, &policy)
        .await
        .unwrap();
    assert_eq!(scts.len(), 3, "{:?}", names(&scts));
    // Three started at once, all answered: the fourth was never asked.
    assert_eq!(logs.total_submissions(), 3);

    // Only two logs: it can never get three.
    let err = submit_precert(&client(), &logs.configured[..2], &precert, &issuer, &policy)
        .await
        .unwrap_err();
    assert!(matches!(err, SubmitError::NotEnoughLogs { .. }), "{err}");
}

/// Temporal sharding: a log whose notAfter interval excludes the certificate
/// is never asked, neither for the precertificate nor the final certificate.
#[tokio::test]
async fn logs_of_another_shard_are_never_asked() {
    let f = fixture();
    let mut logs = start_logs(&["A", "B", "C", "D"], |_, _| {}).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let year = 365 * 86_400;
    // log0 and log1 take certificates expiring within the coming year (this
    // one expires in 90 days); log2 only those expiring next year; log3 any.
    logs.configured[0].not_after_start = Some(now - year);
    logs.configured[0].not_after_end = Some(now + year);
    logs.configured[1].not_after_end = Some(now + year);
    logs.configured[2].not_after_start = Some(now + year);
    logs.configured[2].not_after_end = Some(now + 2 * year);
    let policy = SubmitPolicy {
        // Hedge into every usable log quickly.
        stagger: Duration::from_millis(1),
        ..policy()
    };
    // log0 is slow, so the hedge reaches every usable log.
    logs.log(0)
        .update_knobs(fake_ct_log::KnobsUpdate {
            latency_ms: Some(300),
            ..Default::default()
        })
        .unwrap();
    let scts = submit_precert(&client(), &logs.configured, &f.precert, &f.issuer, &policy)
        .await
        .unwrap();
    assert!(!names(&scts).contains(&"log2"));
    assert_eq!(
        logs.log(2).submissions().total(),
        0,
        "out-of-shard log asked"
    );

    let list: Vec<ct::Sct> = scts.into_iter().map(|s| s.sct).collect();
    let ext = ct::encode_sct_list_extension(&list).unwrap();
    let final_der = f
        .leaf
        .build(&f.ca, CtMarker::SctList(&ext))
        .unwrap()
        .to_der()
        .unwrap();
    let results = submit_final(&client(), &logs.configured, &final_der, &f.issuer, &policy)
        .await
        .unwrap();
    let tried: Vec<&str> = results.iter().map(|r| r.log_name.as_str()).collect();
    assert_eq!(tried, ["log0", "log1", "log3"]);
    assert_eq!(
        logs.log(2).submissions().total(),
        0,
        "out-of-shard log asked"
    );

    // No usable pair of operators left once two more shards are closed.
    logs.configured[1].not_after_end = Some(now);
    logs.configured[3].not_after_end = Some(now);
    let err = submit_precert(&client(), &logs.configured, &f.precert, &f.issuer, &policy)
        .await
        .unwrap_err();
    let SubmitError::NotEnoughLogs { sharded_out, .. } = err else {
        panic!("{err}");
    };
    assert_eq!(sharded_out, 3);
}
