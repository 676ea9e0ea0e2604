//! The knobs that make Kiln the test server ACME client authors lack: each
//! knob, driven through a real client (instant-acme) or the raw one.

use instant_acme::{Account, Order, OrderStatus, RetryPolicy};
use kiln::knobs::Knobs;
use kiln_tests::acme::Acme;
use kiln_tests::instant::{account, ready_order};
use kiln_tests::{TestKiln, csr_der, free_port};
use std::time::Duration;

async fn kiln_with(knobs: Knobs) -> TestKiln {
    TestKiln::start_with(None, |c| c.knobs = Some(knobs)).await
}

fn knobs(f: impl FnOnce(&mut Knobs)) -> Knobs {
    let mut k = Knobs::default();
    f(&mut k);
    k
}

async fn finalized_order(kiln: &TestKiln, account: &Account, name: &str) -> Order {
    let mut order = ready_order(kiln, account, name).await;
    order.finalize_csr(&csr_der(&[name])).await.unwrap();
    assert_eq!(order.state().status, OrderStatus::Processing);
    order
}

/// The store's view of the one order finalized in this Kiln.
async fn only_order(kiln: &TestKiln) -> store::Order {
    let observations = kiln.kiln.store.finalize_observations(0).await.unwrap();
    let id = &observations.last().expect("an observed finalize").order_id;
    kiln.kiln.store.order(id).await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_knob_shows_processing_on_several_polls() {
    let kiln = kiln_with(knobs(|k| k.finalize_delay = "polls:3".parse().unwrap())).await;
    let account = account(&kiln).await;
    let mut order = finalized_order(&kiln, &account, "polls.kiln.test").await;
    let mut processing_seen = 0;
    for _ in 0..200 {
        match order.refresh().await.unwrap().status {
            OrderStatus::Processing => processing_seen += 1,
            OrderStatus::Valid => break,
            other => panic!("unexpected {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(order.state().status, OrderStatus::Valid);
    assert!(
        processing_seen >= 2,
        "instant-acme saw processing on {processing_seen} polls"
    );
    assert!(order.certificate().await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_delay_keeps_the_order_processing_that_long() {
    let kiln = kiln_with(knobs(|k| k.finalize_delay = "2s".parse().unwrap())).await;
    let account = account(&kiln).await;
    let mut order = finalized_order(&kiln, &account, "fixed.kiln.test").await;
    assert_eq!(
        order.refresh().await.unwrap().status,
        OrderStatus::Processing
    );
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(100))
        .timeout(Duration::from_secs(30));
    order.poll_certificate(&retry).await.unwrap();
    let stored = only_order(&kiln).await;
    let took = stored.timeline.completed_at.unwrap() - stored.processing_since.unwrap();
    assert!(took >= 2000, "processing for {took} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_pattern_delays_only_matching_orders() {
    let kiln = kiln_with(knobs(|k| {
        k.finalize_delay = "10m".parse().unwrap();
        k.delay_pattern = Some("*.slow.kiln.test".into());
    }))
    .await;
    let account = account(&kiln).await;
    let mut slow = finalized_order(&kiln, &account, "a.slow.kiln.test").await;
    let mut fast = finalized_order(&kiln, &account, "a.fast.kiln.test").await;
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(50))
        .timeout(Duration::from_secs(20));
    fast.poll_certificate(&retry)
        .await
        .expect("unmatched order is not delayed");
    assert_eq!(
        slow.refresh().await.unwrap().status,
        OrderStatus::Processing
    );
}

/// instant-acme waits as an HTTP-date `Retry-After` says instead of its own
/// 50 ms schedule, so it polls only a few times while the order takes 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_acme_honours_an_http_date_retry_after() {
    let kiln = kiln_with(knobs(|k| {
        k.finalize_delay = "3s".parse().unwrap();
        k.retry_after = "http-date".parse().unwrap();
        k.retry_after_seconds = Some(2);
    }))
    .await;
    let account = account(&kiln).await;
    let mut order = finalized_order(&kiln, &account, "date.kiln.test").await;
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(50))
        .backoff(1.0)
        .timeout(Duration::from_secs(30));
    order.poll_certificate(&retry).await.unwrap();
    let polls = kiln.kiln.store.finalize_observations(0).await.unwrap()[0].polls;
    assert!(
        (1..=4).contains(&polls),
        "{polls} polls in 3 s: the Retry-After date was not honoured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_formats_reach_the_wire() {
    let mgmt = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let kiln = TestKiln::start_with(None, |c| {
        c.knobs = Some(knobs(|k| k.finalize_delay = "10m".parse().unwrap()));
        c.mgmt_listen = Some(mgmt);
    })
    .await;
    let acme = Acme::connect(&kiln).await;
    let account = acme.create_account().await;
    let order = acme.ready_order(&kiln, &account, &["ra.kiln.test"]).await;
    acme.finalize(&account, &order, &csr_der(&["ra.kiln.test"]))
        .await
        .expect_status(200);
    let url = order.url.clone();
    let http = reqwest::Client::new();
    let retry_after = |format: &'static str| {
        let (acme, account, url, http) = (&acme, &account, url.clone(), http.clone());
        async move {
            let doc = serde_json::json!({ "retry_after": format, "retry_after_seconds": 7 });
            let set = http
                .post(format!("http://{mgmt}/knobs"))
                .json(&doc)
                .send()
                .await
                .unwrap();
            assert!(set.status().is_success());
            let reply = acme.post_as_get(account, &url).await;
            reply.expect_status(200);
            reply.header("retry-after").map(str::to_string)
        }
    };
    assert_eq!(retry_after("seconds").await.as_deref(), Some("7"));
    assert_eq!(retry_after("absent").await, None);
    let parse = |v: &str| httpdate_secs_from_now(v);
    let ahead = parse(&retry_after("http-date").await.unwrap());
    assert!((5..=8).contains(&ahead), "{ahead}");
    assert!(parse(&retry_after("past").await.unwrap()) < 0);
    let random: u64 = retry_after("random").await.unwrap().parse().unwrap();
    assert!((1..=14).contains(&random));
    // Reset restores the start-up knobs (seconds, measured).
    http.delete(format!("http://{mgmt}/knobs"))
        .send()
        .await
        .unwrap();
    assert!(retry_after_value_is_seconds(&acme, &account, &url).await);
}

async fn retry_after_value_is_seconds(
    acme: &Acme,
    account: &kiln_tests::acme::Account,
    url: &str,
) -> bool {
    let reply = acme.post_as_get(account, url).await;
    reply
        .header("retry-after")
        .is_some_and(|v| v.parse::<u64>().is_ok())
}

/// Seconds from now to an HTTP-date (negative when past).
fn httpdate_secs_from_now(value: &str) -> i64 {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let t = time::PrimitiveDateTime::parse(value, &format)
        .unwrap()
        .assume_utc();
    (t - time::OffsetDateTime::now_utc()).whole_seconds()
}

/// Each injected stage failure ends the order `invalid`, after
/// `processing`, with the problem that stage would report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_failures_end_orders_invalid_with_the_stage_problem() {
    for (stage, kind, fragment) in [
        ("caa", "caa", "CAA"),
        ("precert", "serverInternal", "precertificate"),
        ("ct", "serverInternal", "Certificate Transparency"),
        ("final", "serverInternal", "final certificate"),
    ] {
        let kiln = kiln_with(knobs(|k| k.fail = Some(stage.parse().unwrap()))).await;
        let account = account(&kiln).await;
        let mut order = finalized_order(&kiln, &account, "fail.kiln.test").await;
        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(50))
            .timeout(Duration::from_secs(20));
        let err = order.poll_certificate(&retry).await.expect_err(stage);
        let instant_acme::Error::Api(problem) = err else {
            panic!("{stage}: {err:?}")
        };
        assert_eq!(
            problem.r#type.as_deref(),
            Some(format!("urn:ietf:params:acme:error:{kind}").as_str()),
            "{stage}"
        );
        assert!(
            problem.detail.as_deref().unwrap_or("").contains(fragment),
            "{stage}: {problem:?}"
        );
        kiln.kiln.shutdown().await;
    }
}

/// `stall`: the order stays `processing` until the finalize deadline, then
/// ends `invalid` — for testing a client's own timeout handling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_keeps_processing_until_the_deadline() {
    let kiln = TestKiln::start_with(None, |c| {
        c.knobs = Some(knobs(|k| k.fail = Some("stall".parse().unwrap())));
        c.finalize_timeout = Duration::from_secs(3);
        c.step_timeout = Duration::from_secs(1);
    })
    .await;
    let account = account(&kiln).await;
    let mut order = finalized_order(&kiln, &account, "stall.kiln.test").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        order.refresh().await.unwrap().status,
        OrderStatus::Processing
    );
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(200))
        .timeout(Duration::from_secs(20));
    let err = order
        .poll_certificate(&retry)
        .await
        .expect_err("stalled order fails at the deadline");
    assert!(
        matches!(err, instant_acme::Error::Api(ref p) if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:serverInternal")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_faults_answer_as_configured() {
    let kiln = kiln_with(knobs(|k| {
        k.http_faults = vec![
            "new-order:bad-nonce:next=1".parse().unwrap(),
            "authz:429:next=1".parse().unwrap(),
            "chall:503:next=1".parse().unwrap(),
            "order:500:next=1".parse().unwrap(),
            "directory:slow=1500ms:next=1".parse().unwrap(),
        ]
    }))
    .await;
    let started = std::time::Instant::now();
    let acme = Acme::connect(&kiln).await; // the slow directory fetch
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the slow fault delayed the directory"
    );
    let account = acme.create_account().await;
    let payload =
        serde_json::json!({"identifiers": [{"type": "dns", "value": "faults.kiln.test"}]});
    acme.new_order_reply(&account, &payload)
        .await
        .expect_problem(400, "badNonce");
    let order = acme.new_order(&account, &["faults.kiln.test"]).await; // next one works
    let authz_url = &order.authorizations()[0];
    let limited = acme.post_as_get(&account, authz_url).await;
    limited.expect_problem(429, "rateLimited");
    assert!(
        limited.header("retry-after").is_some(),
        "429 carries Retry-After"
    );
    acme.post_as_get(&account, authz_url)
        .await
        .expect_status(200);
    let (chall_url, _) = acme.http01_challenge(&account, authz_url).await;
    acme.post_as_get(&account, &chall_url)
        .await
        .expect_problem(503, "serverInternal");
    acme.post_as_get(&account, &order.url)
        .await
        .expect_problem(500, "serverInternal");
    acme.post_as_get(&account, &order.url)
        .await
        .expect_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_api_sets_clears_and_shows_timelines() {
    let mgmt = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let kiln = TestKiln::start_with(None, |c| c.mgmt_listen = Some(mgmt)).await;
    let http = reqwest::Client::new();
    let knobs: serde_json::Value = http
        .get(format!("http://{mgmt}/knobs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(knobs["fail"], "none");
    let bad = http
        .post(format!("http://{mgmt}/knobs"))
        .json(&serde_json::json!({"finalize_delay": "soon"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let set: serde_json::Value = http
        .post(format!("http://{mgmt}/knobs"))
        .json(&serde_json::json!({"fail": "ct"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(set["fail"], "ct");
    let account = account(&kiln).await;
    let mut order = finalized_order(&kiln, &account, "mgmt.kiln.test").await;
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(50))
        .timeout(Duration::from_secs(20));
    assert!(
        order.poll_certificate(&retry).await.is_err(),
        "the CT failure applies at once"
    );
    let id = only_order(&kiln).await.id;
    let timeline: serde_json::Value = http
        .get(format!("http://{mgmt}/orders/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(timeline["status"], "invalid");
    assert!(
        timeline["timeline"]["precertificate"].is_number(),
        "{timeline}"
    );
    let cleared: serde_json::Value = http
        .post(format!("http://{mgmt}/reset"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["fail"], "none");
    let mut order = finalized_order(&kiln, &account, "mgmt2.kiln.test").await;
    order
        .poll_certificate(&retry)
        .await
        .expect("after reset, issuance works");
}
