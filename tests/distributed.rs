//! Kiln distributed: every binary as its own process (`deploy/local/cluster.sh
//! up`, two replicas of each worker) on this machine's RabbitMQ and
//! PostgreSQL, driven by real ACME clients (instant-acme):
//!
//! 1. `two_hundred_concurrent_orders_all_valid`: 200 orders at once (10
//!    accounts × 20, at most 50 in flight) all end `valid`; every replica of
//!    every worker did some of the work; the database holds exactly one
//!    certificate row per order, issued, with its precertificate. Its api
//!    runs as the sole replica (`[api] sole_replica`), and a second api of
//!    either kind then refuses to start; the fault scenarios' api is shared.
//! 2. `kill_nine_signer_and_ct_submitter_mid_run`: 100 orders finalized
//!    together (the fake CT logs answer in 1.5 s, so the pipeline is full);
//!    once the database shows some `valid` and many `processing`, `kill -9`
//!    of one signer and one ct-submitter replica. Every order still ends
//!    `valid` or `invalid` with a stored error, none stays `processing`, and
//!    no serial is signed twice: serials are unique over every certificate
//!    row and every precertificate, no order has two issued certificates,
//!    and each final certificate carries its precertificate's serial.
//! 3. `broker_stopped_for_ten_seconds_mid_run`: the same load; `rabbitmqctl
//!    stop_app`, 10 s, `start_app` (then `await_startup`) mid-run: the same
//!    outcome, and every process is still alive (they reconnect by
//!    themselves).
//! 4. `rate_limits_hold_across_two_api_replicas`: a limit of 3 new accounts
//!    per address, reached through two api replicas on one database, holds
//!    at both.
//!
//! The fault scenarios run with a 5 s step timeout, so the sweeper re-drives
//! a lost job quickly. Clients retry failed requests and poll until Kiln
//! decides; only the 200-order run demands that no request failed at all.
//! Every scenario ends, after its own checks, with `kiln audit` on the
//! cluster's database (`kiln_tests::audit`): exit 0, no violation. The
//! clients and the checks are `kiln_tests::dist`, which
//! `tests/distributed_faults.rs` (more faults) shares.
//!
//! Isolation: each test has a cluster of its own (`kiln_tests::cluster`:
//! database, queue prefix, data directory and ports, all cleaned up; on
//! failure every process's log is kept and its path printed). Test 3 stops
//! the machine's broker, so the tests of this file run one at a time
//! (`ONE_AT_A_TIME`). They need root (for `rabbitmqctl`), RabbitMQ on
//! 127.0.0.1:5672 (or `AMQP_URL`) and PostgreSQL on 127.0.0.1:5432 (trust).
//! Run with `--nocapture` to see each scenario's summary; set
//! `KILN_DIST_KEEP_LOGS=1` to keep every process's log after a passing run.

use kiln_tests::acme::p256;
use kiln_tests::audit;
use kiln_tests::cluster::{Cluster, WORKERS};
use kiln_tests::dist::{
    Load, Progress, REPLICAS, check_invariants, create_accounts, fault_cluster, format_counts,
    https_client, job_counts, rabbitmqctl, raw_acme, run_orders, statuses_in_db, summary,
    wait_mid_run,
};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Test 3 stops the machine's broker: the tests here never overlap.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Stops the RabbitMQ application; dropping it starts it again (also when
/// the test fails meanwhile).
struct BrokerStop {
    stopped: bool,
}

impl BrokerStop {
    fn stop() -> BrokerStop {
        rabbitmqctl(&["stop_app"]).expect("stop the broker");
        BrokerStop { stopped: true }
    }

    fn start(&mut self) {
        rabbitmqctl(&["start_app"]).expect("start the broker");
        rabbitmqctl(&["await_startup"]).expect("broker started");
        self.stopped = false;
    }
}

impl Drop for BrokerStop {
    fn drop(&mut self) {
        if self.stopped {
            let _ = rabbitmqctl(&["start_app"]);
            let _ = rabbitmqctl(&["await_startup"]);
        }
    }
}

// ---- the scenarios --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_orders_all_valid() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let label = "load";
    let cluster = Cluster::start(label, REPLICAS, &[("KILN_API_SOLE_REPLICA", "1")]).await;
    let load = Load {
        orders: 200,
        accounts: 10,
        concurrency: 50,
        finalize_together: false,
        deadline: Duration::from_secs(120),
    };
    let accounts = create_accounts(&cluster, load.accounts).await;
    let started = Instant::now();
    let runs = run_orders(&cluster, &accounts, label, &load, Arc::default()).await;
    let took = started.elapsed();
    let tally = check_invariants(&cluster, &accounts, &runs, true).await;
    summary(label, &load, &tally, took);
    tally.assert_holds(label);
    assert_eq!(tally.valid, load.orders, "every order valid");

    let counts = job_counts(&cluster).await;
    println!("[{label}] jobs ok per replica: {}", format_counts(&counts));
    assert_eq!(counts.len(), WORKERS.len() * REPLICAS, "{counts:?}");
    for (name, count) in &counts {
        let count = count.as_ref().unwrap_or_else(|| panic!("{name} is gone"));
        assert!(count.ok > 0, "{name} handled no job: {counts:?}");
        assert_eq!(count.gave_up, 0, "{name} gave a job up: {counts:?}");
    }
    for (sole, refusal) in [
        ("true", "another api replica serves this database"),
        ("false", "a sole api replica"),
    ] {
        let stderr = second_api_refused(&cluster, sole);
        assert!(stderr.contains(refusal), "sole_replica = {sole}: {stderr}");
    }
    assert!(cluster.api_alive().await, "the sole replica still serves");
    let verdict = audit::cluster(&cluster).await;
    println!("[{label}] audit: {}", verdict.summary());
    verdict.assert_clean(label);
}

/// Invariant 10 for rate limits: two api replicas on one database count
/// the same events, so a limit reached through one holds at the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limits_hold_across_two_api_replicas() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::start(
        "limits",
        1,
        &[("KILN_API_RATE_LIMITS", "new_accounts_per_ip_per_3h = 3")],
    )
    .await;
    let (_second, second_url) = second_api(&cluster).await;
    let first = raw_acme(&cluster, &cluster.directory_url).await;
    let second = raw_acme(&cluster, &second_url).await;
    assert_ne!(first.resource("newAccount"), second.resource("newAccount"));
    first.create_account().await;
    second.create_account().await;
    first.create_account().await;
    for (name, acme) in [("second", &second), ("first", &first)] {
        let reply = acme
            .new_account_reply(&p256(), &serde_json::json!({"termsOfServiceAgreed": true}))
            .await;
        let detail = reply.expect_problem(429, "rateLimited");
        assert!(detail.contains("new accounts"), "{name}: {detail}");
    }
    let verdict = audit::cluster(&cluster).await;
    println!("[limits] audit: {}", verdict.summary());
    verdict.assert_clean("limits");
}

/// A second, shared api replica on the cluster's database and config, on
/// its own ACME and admin ports; killed when the child is dropped.
async fn second_api(cluster: &Cluster) -> (tokio::process::Child, String) {
    let listen = format!("127.0.0.1:{}", kiln_tests::free_port());
    let log = std::fs::File::create(cluster.data().join("logs/api-second.log")).expect("log file");
    let child = tokio::process::Command::new(kiln_tests::cluster::binary("api"))
        .arg("--config")
        .arg(cluster.data().join("config/api.toml"))
        .env("KILN_API__LISTEN", &listen)
        .env(
            "KILN_API__PUBLIC_HTTP_LISTEN",
            format!("127.0.0.1:{}", kiln_tests::free_port()),
        )
        .env("KILN_ACME__BASE_URL", format!("https://{listen}"))
        .env(
            "KILN_ADMIN__LISTEN",
            format!("127.0.0.1:{}", kiln_tests::free_port()),
        )
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("starting a second api");
    let url = format!("https://{listen}/directory");
    let http = https_client(cluster);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(&url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "the second api never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, url)
}

/// Starts another api on the cluster's database and waits for it to exit,
/// which it must, unsuccessfully; its stderr.
fn second_api_refused(cluster: &Cluster, sole_replica: &str) -> String {
    let out = Command::new(kiln_tests::cluster::binary("api"))
        .arg("--config")
        .arg(cluster.data().join("config/api.toml"))
        .env("KILN_API__SOLE_REPLICA", sole_replica)
        .env("KILN_API__LISTEN", "127.0.0.1:0")
        .env("KILN_API__PUBLIC_HTTP_LISTEN", "127.0.0.1:0")
        .output()
        .expect("running a second api");
    assert!(
        !out.status.success(),
        "a second api started beside the sole one"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The fault scenarios' load: every order finalized at once.
const FAULT_LOAD: Load = Load {
    orders: 100,
    accounts: 10,
    concurrency: 100,
    finalize_together: true,
    deadline: Duration::from_secs(150),
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_nine_signer_and_ct_submitter_mid_run() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let label = "kill-9";
    let cluster = fault_cluster(label, &[]).await;
    let load = FAULT_LOAD;
    let accounts = create_accounts(&cluster, load.accounts).await;
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let clients = run_orders(&cluster, &accounts, label, &load, progress.clone());
    let fault = async {
        let db = wait_mid_run(&cluster.store, &accounts, load.orders).await;
        let (valid, in_flight) = (progress.valid(), progress.in_flight());
        let at = started.elapsed();
        let victims = ["signer-1", "ct-submitter-1"];
        for victim in victims {
            cluster.kill_nine(victim);
        }
        println!(
            "[{label}] kill -9 {} at {:.1}s: database: {db}; clients saw {valid} valid, {in_flight} processing",
            victims.join(" and "),
            at.as_secs_f64(),
        );
    };
    let (runs, ()) = tokio::join!(clients, fault);
    let took = started.elapsed();
    let tally = check_invariants(&cluster, &accounts, &runs, false).await;
    summary(label, &load, &tally, took);
    tally.assert_holds(label);
    println!(
        "[{label}] jobs ok per replica: {}",
        format_counts(&job_counts(&cluster).await)
    );
    let verdict = audit::cluster(&cluster).await;
    println!("[{label}] audit: {}", verdict.summary());
    verdict.assert_clean(label);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_stopped_for_ten_seconds_mid_run() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let label = "broker-stop";
    let cluster = fault_cluster(label, &[]).await;
    let load = FAULT_LOAD;
    let accounts = create_accounts(&cluster, load.accounts).await;
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let clients = run_orders(&cluster, &accounts, label, &load, progress.clone());
    let fault = async {
        wait_mid_run(&cluster.store, &accounts, load.orders).await;
        let at = async |what: &str| {
            let (valid, in_flight) = (progress.valid(), progress.in_flight());
            let when = started.elapsed().as_secs_f64();
            let db = statuses_in_db(&cluster.store, &accounts).await;
            println!(
                "[{label}] {what} at {when:.1}s: database: {db}; clients saw {valid} valid, {in_flight} processing"
            )
        };
        at("rabbitmqctl stop_app").await;
        let mut broker = tokio::task::spawn_blocking(BrokerStop::stop)
            .await
            .expect("stop task");
        at("broker stopped").await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        at("rabbitmqctl start_app").await;
        let broker = tokio::task::spawn_blocking(move || {
            broker.start();
            broker
        })
        .await
        .expect("start task");
        drop(broker);
        at("broker started").await;
    };
    let (runs, ()) = tokio::join!(clients, fault);
    let took = started.elapsed();
    let tally = check_invariants(&cluster, &accounts, &runs, false).await;
    summary(label, &load, &tally, took);
    tally.assert_holds(label);
    let counts = job_counts(&cluster).await;
    println!("[{label}] jobs ok per replica: {}", format_counts(&counts));
    assert!(
        counts.iter().all(|(_, c)| c.is_some()),
        "every worker survived the outage: {counts:?}"
    );
    assert!(cluster.api_alive().await, "the api survived the outage");
    // Every replica subscribed again by itself.
    let consumers = cluster.await_all_consuming(Duration::from_secs(30)).await;
    println!("[{label}] consumers per stage queue after the outage: {consumers:?}");
    assert!(
        consumers.values().all(|n| *n as usize == REPLICAS),
        "every worker replica consumes again: {consumers:?}"
    );
    let verdict = audit::cluster(&cluster).await;
    println!("[{label}] audit: {}", verdict.summary());
    verdict.assert_clean(label);
}
