//! Finalization modes, the brownout schedule, and the client-compatibility
//! report, end to end against an in-process Kiln.

use api::{FinalizeMode, FinalizePolicy, PolicyHandle};
use instant_acme::{Order, OrderStatus, RetryPolicy};
use kiln_tests::instant::{account, ready_order};
use kiln_tests::{TestKiln, csr_der};
use std::time::{Duration, Instant};

async fn kiln_in(mode: FinalizeMode) -> TestKiln {
    TestKiln::start_with(None, |c| {
        c.finalize = PolicyHandle::new(FinalizePolicy::fixed(mode))
    })
    .await
}

/// Makes every fake CT log answer after `latency`.
fn slow_ct_logs(kiln: &TestKiln, latency: Duration) {
    for log in &kiln.kiln.ct_logs {
        log.fake
            .update_knobs(fake_ct_log::KnobsUpdate {
                latency_ms: Some(latency.as_millis() as u64),
                ..Default::default()
            })
            .unwrap();
    }
}

async fn poll_to_certificate(order: &mut Order) -> String {
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(100))
        .timeout(Duration::from_secs(60));
    order.poll_certificate(&retry).await.expect("certificate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mode_answers_as_specified_with_a_fast_pipeline() {
    for (mode, want) in [
        (FinalizeMode::Async, OrderStatus::Processing),
        (FinalizeMode::Sync, OrderStatus::Valid),
        (FinalizeMode::Hybrid, OrderStatus::Valid),
    ] {
        let kiln = kiln_in(mode).await;
        let account = account(&kiln).await;
        let mut order = ready_order(&kiln, &account, "modes.kiln.test").await;
        order
            .finalize_csr(&csr_der(&["modes.kiln.test"]))
            .await
            .unwrap();
        assert_eq!(order.state().status, want, "{mode:?}");
        if want == OrderStatus::Valid {
            assert!(
                order.state().certificate.is_some(),
                "{mode:?}: certificate URL at once"
            );
        }
        poll_to_certificate(&mut order).await;
        kiln.kiln.shutdown().await;
    }
}

/// CT logs take 8 s; the client gives each request 5 s. Synchronous
/// finalization makes it time out — the failure that motivated async — while
/// async and hybrid answer in time and the client gets its certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_dependency_breaks_only_sync_clients() {
    const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
    for mode in [
        FinalizeMode::Sync,
        FinalizeMode::Async,
        FinalizeMode::Hybrid,
    ] {
        let kiln = kiln_in(mode).await;
        slow_ct_logs(&kiln, Duration::from_secs(8));
        let account = account(&kiln).await;
        let mut order = ready_order(&kiln, &account, "slow.kiln.test").await;
        let started = Instant::now();
        let answered = tokio::time::timeout(
            CLIENT_TIMEOUT,
            order.finalize_csr(&csr_der(&["slow.kiln.test"])),
        )
        .await;
        match mode {
            FinalizeMode::Sync => assert!(
                answered.is_err(),
                "sync finalize must outlast the client's timeout"
            ),
            _ => {
                answered
                    .expect("answered within the client's timeout")
                    .unwrap();
                assert_eq!(order.state().status, OrderStatus::Processing, "{mode:?}");
                println!("{mode:?}: finalize answered in {:?}", started.elapsed());
                poll_to_certificate(&mut order).await;
            }
        }
        kiln.kiln.shutdown().await;
    }
}

/// A schedule file: a window covering now switches to sync; an account
/// override beats the window; outside any window the default applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_and_its_overrides_pick_the_mode() {
    let now = time::OffsetDateTime::now_utc();
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let schedule = |extra: &str| {
        format!(
            "environment = \"staging\"\nmode = \"async\"\n[[windows]]\nstart = \"{}\"\nend = \"{}\"\nmode = \"sync\"\n{extra}",
            fmt(now - time::Duration::hours(1)),
            fmt(now + time::Duration::hours(1)),
        )
    };
    let policy = PolicyHandle::new(FinalizePolicy::from_toml(&schedule("")).unwrap());
    let handle = policy.clone();
    let kiln = TestKiln::start_with(None, move |c| c.finalize = handle).await;
    let account = account(&kiln).await;
    let mut order = ready_order(&kiln, &account, "window.kiln.test").await;
    order
        .finalize_csr(&csr_der(&["window.kiln.test"]))
        .await
        .unwrap();
    assert_eq!(
        order.state().status,
        OrderStatus::Valid,
        "inside the sync window"
    );

    // A reload (what SIGHUP does) with an override for this account.
    let id = account.id().rsplit('/').next().unwrap().to_string();
    policy.replace(
        FinalizePolicy::from_toml(&schedule(&format!(
            "[[accounts]]\nid = \"{id}\"\nmode = \"async\"\n"
        )))
        .unwrap(),
    );
    let mut order = ready_order(&kiln, &account, "override.kiln.test").await;
    order
        .finalize_csr(&csr_der(&["override.kiln.test"]))
        .await
        .unwrap();
    assert_eq!(
        order.state().status,
        OrderStatus::Processing,
        "the account override wins"
    );
    poll_to_certificate(&mut order).await;
    kiln.kiln.shutdown().await;
}

/// A client that polls (instant-acme) and one that stops after the finalize
/// answer are told apart by User-Agent, with the right counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_separates_pollers_from_quitters() {
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], kiln_tests::free_port()));
    let kiln = TestKiln::start_with(None, |c| c.admin_listen = Some(admin)).await;
    // Two polling issuances.
    let account = account(&kiln).await;
    for name in ["p1.kiln.test", "p2.kiln.test"] {
        let mut order = ready_order(&kiln, &account, name).await;
        order.finalize_csr(&csr_der(&[name])).await.unwrap();
        poll_to_certificate(&mut order).await;
    }
    // Three finalizes from a client that never comes back.
    let mut quitter = kiln_tests::acme::Acme::connect(&kiln).await;
    quitter.http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(kiln.kiln.root_pem.as_bytes()).unwrap(),
        )
        .user_agent("QuitterBot/0.1 (test)")
        .build()
        .unwrap();
    let q_account = quitter.create_account().await;
    for name in ["q1.kiln.test", "q2.kiln.test", "q3.kiln.test"] {
        let order = quitter.ready_order(&kiln, &q_account, &[name]).await;
        let reply = quitter
            .finalize(&q_account, &order, &csr_der(&[name]))
            .await;
        reply.expect_status(200);
    }
    let observations = kiln.kiln.store.finalize_observations(0).await.unwrap();
    // Abandoned = no poll within 0 ms: everything unpolled counts.
    let rows = api::compat::report(&observations, store::now_ms(), 0);
    let family = |name: &str| {
        rows.iter()
            .find(|r| r.family == name)
            .unwrap_or_else(|| panic!("{name} in {rows:?}"))
    };
    let pollers = family("instant-acme");
    assert_eq!(
        (
            pollers.finalized,
            pollers.polled,
            pollers.downloaded,
            pollers.abandoned
        ),
        (2, 2, 2, 0)
    );
    let quitters = family("QuitterBot");
    assert_eq!(
        (
            quitters.finalized,
            quitters.polled,
            quitters.downloaded,
            quitters.abandoned
        ),
        (3, 0, 0, 3)
    );
    println!("{}", api::compat::render_table(&rows));
    // The operator's page shows both families.
    let page = reqwest::get(format!("http://{admin}/compat"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("QuitterBot") && page.contains("instant-acme") && page.contains("<svg"),
        "{page}"
    );
    kiln.kiln.shutdown().await;
}
