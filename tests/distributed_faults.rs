//! Fault scenarios of Kiln distributed (issue 16), each on a cluster of its
//! own (`deploy/local/cluster.sh up`, two replicas of every worker, this
//! machine's RabbitMQ and PostgreSQL, a 5 s step timeout and CT logs that
//! answer in 1.5 s so that a fault finds the pipeline full), driven by
//! instant-acme clients that retry every failed request, and each ending
//! with `kiln audit` on the cluster's database:
//!
//! 1. `kill_nine_api_mid_run_then_restart`: `kill -9` of the api while
//!    orders are being created, validated, finalized and polled (at most
//!    20 in flight); restarted 2 s later as a supervisor would.
//! 2. `kill_nine_validator_and_caa_checker_mid_run`: every DNS answer 0.8 s
//!    late and CAA rechecked at every finalize, so both stages hold jobs
//!    for a while; `kill -9` of one caa-checker replica, then of one
//!    validator replica, each once RabbitMQ shows it holding unacked jobs.
//!    The other replica of each carries on alone (RabbitMQ hands it the
//!    dead one's jobs).
//! 3. `postgres_restarted_immediately_mid_run`: every order finalized at
//!    once; with three quarters of them `processing`, PostgreSQL stopped
//!    with `-m immediate` (no checkpoint, every connection cut) and started
//!    3 s later.
//! 4. `rabbitmq_node_restarted_mid_run`: the same moment (CT logs answering
//!    in 4 s, so orders are still mid-pipeline once the node is down); the
//!    whole RabbitMQ node stopped (`rabbitmqctl stop`) and started again
//!    (`rabbitmq-server -detached`): every connection and channel lost, the
//!    queues recovered from disk.
//! 5. `a_misbehaving_ct_log_never_gets_into_a_certificate`: one of the three
//!    CT logs is replaced by one with the same key and URL that answers, in
//!    turn, with an SCT whose signature does not verify, a correctly signed
//!    SCT for another certificate, or not at all.
//! 6. `a_poison_message_in_each_queue_is_dead_lettered`: into each stage
//!    queue, an undecodable message, a job naming nothing that exists and a
//!    job the stage does not handle (naming an order mid-pipeline).
//! 7. `fifty_concurrent_finalizes_of_one_order_one_wins`.
//!
//! Each prints one line: attempted / valid / invalid / stuck / lost /
//! redelivered (jobs retried by a stage or re-driven by the sweeper, from
//! every process's log), and the audit's verdict; each asserts the
//! invariants of `kiln_tests::dist::check_invariants` (every order `valid`,
//! or `invalid` with a stored error; no serial signed twice; …), none stuck,
//! none lost, and an audit with exit 0 and no violation.
//!
//! Scenarios 3 and 4 restart the machine's PostgreSQL and RabbitMQ (a guard
//! starts them again if the test fails meanwhile), so the tests of this
//! file run one at a time (`ONE_AT_A_TIME`). They need root (`rabbitmqctl`,
//! `pg_ctlcluster`). Run with `--nocapture` to see the reports; set
//! `KILN_DIST_KEEP_LOGS=1` to keep every process's log after a passing run.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dns::testing::TestDnsServer;
use instant_acme::Account;
use kiln_tests::acme::{b64, p256, thumbprint};
use kiln_tests::audit;
use kiln_tests::cluster::{Cluster, WORKERS, amqp_url};
use kiln_tests::dist::{
    Load, OrderRun, Outcome, Progress, REPLICAS, Tally, check_invariants, create_accounts, db_read,
    fault_cluster, fault_report, format_counts, job_counts, orders_in_db, rabbitmqctl, raw_acme,
    reruns, run_orders, statuses_in_db, wait_mid_run,
};
use kiln_tests::{csr_der_with_key, parse_chain};
use proto::{Envelope, Job};
use serde_json::json;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use store::CertificateState;
use tokio::sync::Mutex;
use tokio::task::JoinSet;

/// Scenarios 3 and 4 restart the machine's database and broker.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Every order finalized at once, so a fault finds the pipeline full.
const TOGETHER: Load = Load {
    orders: 40,
    accounts: 8,
    concurrency: 40,
    finalize_together: true,
    deadline: Duration::from_secs(150),
};

/// At most 20 orders in flight, so a fault finds new orders, challenges,
/// finalizations and polls all under way.
const STAGGERED: Load = Load {
    orders: 40,
    accounts: 8,
    concurrency: 20,
    finalize_together: false,
    deadline: Duration::from_secs(150),
};

/// Runs `load` on `cluster` with `fault` alongside (it starts when it
/// likes, typically at [`wait_mid_run`]); then the invariants, the audit
/// and the report line. Asserts no violation, none stuck or lost, and a
/// clean audit.
async fn run_with_fault<F>(
    cluster: &Cluster,
    load: &Load,
    fault: impl FnOnce(Arc<Progress>, Vec<Account>, Instant) -> F,
) -> (Tally, Vec<OrderRun>, F::Output)
where
    F: Future,
{
    let label = cluster.label.clone();
    let accounts = create_accounts(cluster, load.accounts).await;
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let clients = run_orders(cluster, &accounts, &label, load, progress.clone());
    let fault = fault(progress, accounts.clone(), started);
    let (runs, faulted) = tokio::join!(clients, fault);
    let took = started.elapsed();
    let tally = check_invariants(cluster, &accounts, &runs, false).await;
    let verdict = audit::cluster(cluster).await;
    fault_report(cluster, &tally, &verdict, took);
    println!(
        "[{label}] jobs ok per replica: {}",
        format_counts(&job_counts(cluster).await)
    );
    tally.assert_holds(&label);
    assert_eq!((tally.stuck, tally.lost), (0, 0), "[{label}] stuck, lost");
    // A fault may cost an order or two its deadline, not the run: every
    // order ending `invalid` with a stored error would pass the above.
    assert!(
        tally.valid * 10 >= tally.attempted * 9,
        "[{label}] only {} of {} orders valid",
        tally.valid,
        tally.attempted
    );
    verdict.assert_clean(&label);
    (tally, runs, faulted)
}

/// Prints where the run stood when `what` happened.
async fn at(
    cluster: &Cluster,
    accounts: &[Account],
    progress: &Progress,
    started: Instant,
    what: &str,
) {
    let db = statuses_in_db(&cluster.store, accounts).await;
    println!(
        "[{}] {what} at {:.1}s: database: {db}; clients saw {} valid, {} processing",
        cluster.label,
        started.elapsed().as_secs_f64(),
        progress.valid(),
        progress.in_flight()
    );
}

/// Every worker replica but `gone` consumes its stage queue again.
async fn assert_consumers(cluster: &Cluster, gone: &[&str], within: Duration) {
    let want: BTreeMap<String, u32> = WORKERS
        .iter()
        .enumerate()
        .map(|(i, worker)| {
            let queue = format!("{}{}", cluster.queue_prefix(), proto::queues::ALL[i]);
            let dead = gone.iter().filter(|g| g.starts_with(worker)).count();
            (queue, (REPLICAS - dead) as u32)
        })
        .collect();
    let until = Instant::now() + within;
    loop {
        let seen = cluster.await_all_consuming(Duration::ZERO).await;
        if seen == want {
            return;
        }
        assert!(
            Instant::now() < until,
            "[{}] consumers per stage queue: {seen:?}, want {want:?}",
            cluster.label
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until at least `n` of the test's orders are `processing` at once
/// (every order finalized together: the pipeline is full).
async fn wait_processing(cluster: &Cluster, accounts: &[Account], n: usize) {
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        let counts = kiln_tests::dist::status_counts(&cluster.store, accounts).await;
        if counts.get("processing").is_some_and(|p| *p >= n) {
            return;
        }
        assert!(
            Instant::now() < until,
            "[{}] never {n} orders processing: {counts:?}",
            cluster.label
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---- 1. the api -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_nine_api_mid_run_then_restart() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let cluster = fault_cluster("api-kill", &[]).await;
    run_with_fault(&cluster, &STAGGERED, |progress, accounts, started| {
        let cluster = &cluster;
        async move {
            wait_mid_run(&cluster.store, &accounts, STAGGERED.orders).await;
            at(cluster, &accounts, &progress, started, "kill -9 api").await;
            cluster.kill_nine("api");
            tokio::time::sleep(Duration::from_secs(2)).await;
            cluster.restart("api");
            cluster.await_api_serving(Duration::from_secs(30)).await;
            at(
                cluster,
                &accounts,
                &progress,
                started,
                "api restarted and serving",
            )
            .await;
        }
    })
    .await;
    assert!(cluster.api_alive().await, "the restarted api serves");
    assert_consumers(&cluster, &[], Duration::from_secs(10)).await;
}

// ---- 2. a validator and a caa-checker -----------------------------------------------

/// A DNS server answering every name with 127.0.0.1 and nothing else, as
/// cluster.sh's fake-dns does, but each answer `delay` late (UDP and TCP):
/// validator and caa-checker jobs then take that long, so a kill finds
/// some in hand. Stops when dropped.
struct SlowDns {
    addr: std::net::SocketAddr,
    _server: TestDnsServer,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SlowDns {
    async fn start(delay: Duration) -> SlowDns {
        use tokio::net::{TcpListener, TcpStream, UdpSocket};
        let server = TestDnsServer::start().await;
        server
            .set_a("*", std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
            .await;
        let upstream = server.addr();
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
            let addr = udp.local_addr().expect("UDP addr");
            if let Ok(tcp) = TcpListener::bind(addr).await {
                break (Arc::new(udp), tcp);
            }
        };
        let addr = udp.local_addr().expect("UDP addr");
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            while let Ok((n, client)) = udp.recv_from(&mut buf).await {
                let (query, udp) = (buf[..n].to_vec(), udp.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let Ok(socket) = UdpSocket::bind("127.0.0.1:0").await else {
                        return;
                    };
                    let mut answer = vec![0u8; 65_535];
                    if socket.send_to(&query, upstream).await.is_ok()
                        && let Ok(Ok(m)) =
                            tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut answer))
                                .await
                    {
                        let _ = udp.send_to(&answer[..m], client).await;
                    }
                });
            }
        });
        let tcp_task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = tcp.accept().await {
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        SlowDns {
            addr,
            _server: server,
            tasks: vec![udp_task, tcp_task],
        }
    }
}

impl Drop for SlowDns {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Lines of `rabbitmqctl ARGS --no-table-headers -q`.
fn rabbitmqctl_lines(args: &[&str]) -> Vec<String> {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .args(["--no-table-headers", "-q"])
        .output()
        .expect("rabbitmqctl runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Deliveries process `name` of the cluster holds unacknowledged: jobs in
/// its hands, which RabbitMQ gives to another consumer if it dies. Its
/// connection is the one named `kiln-<stage>-<pid>`.
fn jobs_in_hand(cluster: &Cluster, name: &str) -> u32 {
    let tag = format!("-{}", cluster.pid_of(name));
    let connections: Vec<String> =
        rabbitmqctl_lines(&["list_connections", "pid", "client_properties"])
            .into_iter()
            .filter(|line| line.contains("kiln-") && line.contains(&tag))
            .filter_map(|line| Some(line.split_once('\t')?.0.to_string()))
            .collect();
    rabbitmqctl_lines(&["list_channels", "connection", "messages_unacknowledged"])
        .iter()
        .filter_map(|line| {
            let (connection, n) = line.split_once('\t')?;
            connections
                .iter()
                .any(|c| c == connection)
                .then(|| n.trim().parse::<u32>().ok())?
        })
        .sum()
}

/// `kill -9` of `name` once it holds at least one job (at most 60 s); how
/// many it held.
async fn kill_nine_holding(cluster: &Cluster, name: &str) -> u32 {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let held = tokio::task::block_in_place(|| jobs_in_hand(cluster, name));
        if held > 0 {
            cluster.kill_nine(name);
            return held;
        }
        assert!(
            Instant::now() < until,
            "[{}] {name} never held a job",
            cluster.label
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_nine_validator_and_caa_checker_mid_run() {
    let _alone = ONE_AT_A_TIME.lock().await;
    // Every lookup 0.8 s late, and CAA rechecked at every finalize: both
    // stages' jobs take a while, so a kill finds some in hand.
    let dns = SlowDns::start(Duration::from_millis(800)).await;
    let dns_server = dns.addr.to_string();
    let cluster = fault_cluster(
        "validator-caa-kill",
        &[
            ("KILN_DNS_SERVER", dns_server.as_str()),
            ("KILN_CAA_RECHECK_AFTER_SECS", "0"),
        ],
    )
    .await;
    run_with_fault(&cluster, &STAGGERED, |progress, accounts, started| {
        let cluster = &cluster;
        async move {
            // The first orders' CAA rechecks, then later orders'
            // validations, each killed in the middle of jobs.
            for victim in ["caa-checker-1", "validator-1"] {
                let held = kill_nine_holding(cluster, victim).await;
                let what = format!("kill -9 {victim}, holding {held} jobs");
                at(cluster, &accounts, &progress, started, &what).await;
            }
        }
    })
    .await;
    let gone = ["caa-checker-1", "validator-1"];
    assert_consumers(&cluster, &gone, Duration::from_secs(10)).await;
}

// ---- 3. PostgreSQL ---------------------------------------------------------------------

/// `pg_ctlcluster` on this machine's one cluster (`/etc/postgresql/<v>/main`).
fn pg_ctlcluster(action: &str) -> Result<(), String> {
    let version = std::fs::read_dir("/etc/postgresql")
        .map_err(|e| format!("/etc/postgresql: {e}"))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .next()
        .ok_or("no PostgreSQL cluster in /etc/postgresql")?;
    let mut command = Command::new("pg_ctlcluster");
    command.args(["--skip-systemctl-redirect", &version, "main", action]);
    if action == "stop" {
        command.args(["-m", "immediate"]);
    }
    let out = command
        .output()
        .map_err(|e| format!("pg_ctlcluster {action}: {e} (needs root)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "pg_ctlcluster {action}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// PostgreSQL stopped with `-m immediate`; dropping it starts it again
/// (also when the test fails meanwhile).
struct PostgresStop {
    stopped: bool,
}

impl PostgresStop {
    fn stop() -> PostgresStop {
        // The guard first: a stop that fails half-way is started again.
        let stopped = PostgresStop { stopped: true };
        pg_ctlcluster("stop").expect("stop PostgreSQL");
        stopped
    }

    fn start(&mut self) {
        pg_ctlcluster("start").expect("start PostgreSQL");
        self.stopped = false;
    }
}

impl Drop for PostgresStop {
    fn drop(&mut self) {
        if self.stopped {
            let _ = pg_ctlcluster("start");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_immediately_mid_run() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let cluster = fault_cluster("postgres-restart", &[]).await;
    run_with_fault(&cluster, &TOGETHER, |progress, accounts, started| {
        let cluster = &cluster;
        async move {
            wait_processing(cluster, &accounts, TOGETHER.orders * 3 / 4).await;
            at(
                cluster,
                &accounts,
                &progress,
                started,
                "PostgreSQL stop -m immediate",
            )
            .await;
            let mut postgres = tokio::task::spawn_blocking(PostgresStop::stop)
                .await
                .expect("stop task");
            tokio::time::sleep(Duration::from_secs(3)).await;
            let postgres = tokio::task::spawn_blocking(move || {
                postgres.start();
                postgres
            })
            .await
            .expect("start task");
            drop(postgres);
            at(cluster, &accounts, &progress, started, "PostgreSQL started").await;
        }
    })
    .await;
    assert!(cluster.api_alive().await, "the api survived the outage");
    assert_consumers(&cluster, &[], Duration::from_secs(30)).await;
}

// ---- 4. the RabbitMQ node -------------------------------------------------------------

/// Starts the stopped RabbitMQ node and waits until it runs (`await_startup`
/// fails at once while the node is not up yet, so it is asked again).
fn start_broker_node() -> Result<(), String> {
    // Refused when the node runs already: then `await_startup` says so.
    let started = Command::new("rabbitmq-server")
        .arg("-detached")
        .output()
        .map_err(|e| format!("rabbitmq-server -detached: {e} (needs root)"));
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        match rabbitmqctl(&["await_startup"]) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > until => {
                return Err(format!("{e}\n(rabbitmq-server -detached: {started:?})"));
            }
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

/// The whole RabbitMQ node stopped; dropping it starts the node again (also
/// when the test fails meanwhile).
struct BrokerNodeStop {
    stopped: bool,
}

impl BrokerNodeStop {
    fn stop() -> BrokerNodeStop {
        // The guard first: a stop that fails half-way is started again.
        let stopped = BrokerNodeStop { stopped: true };
        rabbitmqctl(&["stop"]).expect("stop the RabbitMQ node");
        stopped
    }

    fn start(&mut self) {
        start_broker_node().expect("start the RabbitMQ node");
        self.stopped = false;
    }
}

impl Drop for BrokerNodeStop {
    fn drop(&mut self) {
        if self.stopped
            && let Err(e) = start_broker_node()
        {
            eprintln!("starting the RabbitMQ node again: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rabbitmq_node_restarted_mid_run() {
    let _alone = ONE_AT_A_TIME.lock().await;
    // Slower CT logs: orders are still mid-pipeline once the node is down
    // (stopping it takes seconds).
    let cluster = fault_cluster("rabbitmq-restart", &[("KILN_CT_LATENCY_MS", "4000")]).await;
    run_with_fault(&cluster, &TOGETHER, |progress, accounts, started| {
        let cluster = &cluster;
        async move {
            wait_processing(cluster, &accounts, TOGETHER.orders * 3 / 4).await;
            at(cluster, &accounts, &progress, started, "rabbitmqctl stop").await;
            let mut broker = tokio::task::spawn_blocking(BrokerNodeStop::stop)
                .await
                .expect("stop task");
            at(cluster, &accounts, &progress, started, "node stopped").await;
            let broker = tokio::task::spawn_blocking(move || {
                broker.start();
                broker
            })
            .await
            .expect("start task");
            drop(broker);
            at(cluster, &accounts, &progress, started, "node started").await;
        }
    })
    .await;
    let counts = job_counts(&cluster).await;
    assert!(
        counts.iter().all(|(_, c)| c.is_some()),
        "every worker survived the restart: {counts:?}"
    );
    assert!(cluster.api_alive().await, "the api survived the restart");
    assert_consumers(&cluster, &[], Duration::from_secs(60)).await;
}

// ---- 5. a misbehaving CT log ----------------------------------------------------------

/// What the misbehaving log answers, in turn.
const MISBEHAVIOURS: [&str; 3] = ["bad signature", "SCT for another certificate", "hang"];

/// A CT log at a cluster log's URL with its key, misbehaving on every
/// submission (`MISBEHAVIOURS`, in turn); stops serving when dropped.
struct BadLog {
    log_id: [u8; 32],
    state: BadLogState,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct BadLogState {
    signer: Arc<ct::LogSigner>,
    next: Arc<AtomicUsize>,
    /// Submissions answered per misbehaviour.
    served: Arc<std::sync::Mutex<[usize; 3]>>,
    /// The last entry signed, precertificate and certificate: the "other
    /// certificate" of the next one.
    previous: Arc<std::sync::Mutex<[Option<Vec<u8>>; 2]>>,
}

impl BadLog {
    /// Kills the cluster's fake log `i` and serves its URL instead.
    async fn replace(cluster: &Cluster, i: usize) -> BadLog {
        let (url, key_path) = cluster.ct_log(i);
        let key = fake_ct_log::load_or_create_key(&key_path).expect("the log's key");
        let signer = Arc::new(ct::LogSigner::new(key).expect("log signer"));
        cluster.kill_nine(&format!("ct-log-{i}"));
        let addr = url.trim_start_matches("http://").to_string();
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(&addr).await {
                Ok(listener) => break listener,
                Err(_) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("binding the killed log's {addr}: {e}"),
            }
        };
        let state = BadLogState {
            signer: signer.clone(),
            next: Arc::default(),
            served: Arc::default(),
            previous: Arc::default(),
        };
        let router = axum::Router::new()
            .route(
                "/ct/v1/add-pre-chain",
                axum::routing::post(|State(s): State<BadLogState>, body: Bytes| {
                    s.answer(body, true)
                }),
            )
            .route(
                "/ct/v1/add-chain",
                axum::routing::post(|State(s): State<BadLogState>, body: Bytes| {
                    s.answer(body, false)
                }),
            )
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        BadLog {
            log_id: signer.log_id(),
            state,
            task,
        }
    }

    fn served(&self) -> [usize; 3] {
        *self.state.served.lock().expect("lock")
    }
}

impl Drop for BadLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BadLogState {
    async fn answer(self, body: Bytes, precert: bool) -> Response {
        let turn = self.next.fetch_add(1, Ordering::SeqCst) % MISBEHAVIOURS.len();
        self.served.lock().expect("lock")[turn] += 1;
        if MISBEHAVIOURS[turn] == "hang" {
            // Far beyond the submitter's per-request timeout.
            tokio::time::sleep(Duration::from_secs(600)).await;
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        match self.sct(&body, precert, turn) {
            Ok(response) => axum::Json(response).into_response(),
            Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
        }
    }

    fn sct(&self, body: &[u8], precert: bool, turn: usize) -> Result<ct::AddChainResponse, String> {
        let request: ct::AddChainRequest =
            serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let chain = request.decode_chain().map_err(|e| e.to_string())?;
        let [leaf, issuer, ..] = chain.as_slice() else {
            return Err("a chain of the certificate and its issuer, please".into());
        };
        let entry = if precert {
            ct::tbs_without_extension(leaf, ct::POISON_OID).map_err(|e| e.to_string())?
        } else {
            leaf.clone()
        };
        let other =
            self.previous.lock().expect("lock")[usize::from(precert)].replace(entry.clone());
        let signed = match MISBEHAVIOURS[turn] {
            "SCT for another certificate" => other.unwrap_or_else(|| {
                let mut changed = entry.clone();
                *changed.last_mut().expect("an entry") ^= 1;
                changed
            }),
            _ => entry,
        };
        let timestamp = store::now_ms() as u64;
        let mut sct = if precert {
            let key_hash = ct::issuer_key_hash(issuer).map_err(|e| e.to_string())?;
            self.signer.sign_precert(timestamp, &key_hash, &signed, &[])
        } else {
            self.signer.sign_x509(timestamp, &signed, &[])
        }
        .map_err(|e| e.to_string())?;
        if MISBEHAVIOURS[turn] == "bad signature" {
            // The signature covers another timestamp than the one shown.
            sct.timestamp += 1;
        }
        ct::AddChainResponse::try_from(&sct).map_err(|e| e.to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_misbehaving_ct_log_never_gets_into_a_certificate() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let cluster = fault_cluster("bad-ct-log", &[]).await;
    let bad = BadLog::replace(&cluster, 0).await;
    let load = Load {
        orders: 30,
        ..TOGETHER
    };
    let (tally, runs, ()) = run_with_fault(&cluster, &load, |_, _, _| async {}).await;
    let served = bad.served();
    println!(
        "[{}] the misbehaving log answered {}",
        cluster.label,
        MISBEHAVIOURS
            .iter()
            .zip(served)
            .map(|(what, n)| format!("{n} with {what}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(
        served.iter().all(|n| *n > 0),
        "every misbehaviour was met: {served:?}"
    );
    // Two well-behaved logs of two operators remain: the policy is met.
    assert_eq!(tally.valid, load.orders, "every order valid");
    for run in &runs {
        let Outcome::Valid { pem } = &run.outcome else {
            unreachable!("all valid")
        };
        let leaf = parse_chain(pem)[0].to_der().expect("DER");
        let scts = ct::scts_from_certificate(&leaf).expect("SCT list");
        assert!(
            scts.iter().all(|s| s.log_id != bad.log_id),
            "{}: embeds an SCT of the misbehaving log",
            run.name
        );
    }
    let verdict = audit::cluster(&cluster).await;
    let scts = verdict.check(7);
    assert_eq!(scts["status"], "pass", "{scts:#}");
    assert_eq!(scts["checked"], load.orders as u64, "{scts:#}");
}

// ---- 6. poison messages ---------------------------------------------------------------

/// One message published straight to a stage queue.
struct Poison {
    /// The stage queue (proto name).
    queue: &'static str,
    body: Vec<u8>,
    /// The job it decodes to (`None`: undecodable).
    job: Option<Job>,
    /// The order it must end `invalid`, if any.
    victim: Option<String>,
}

/// MessagePack of a short string.
fn msgpack_str(text: &str) -> Vec<u8> {
    assert!(text.len() < 32, "a fixstr");
    let mut out = vec![0xa0 | text.len() as u8];
    out.extend_from_slice(text.as_bytes());
    out
}

/// An envelope whose job is of a kind no build knows: it does not decode.
fn unknown_kind_envelope() -> Vec<u8> {
    let mut out = vec![0x83];
    out.extend(msgpack_str("v"));
    out.push(0x01);
    out.extend(msgpack_str("job"));
    out.push(0x81);
    out.extend(msgpack_str("kind"));
    out.extend(msgpack_str("mint-a-root-ca"));
    out.extend(msgpack_str("attempt"));
    out.push(0x01);
    out
}

/// Three per stage queue: undecodable, naming nothing that exists, and a
/// job the stage does not handle naming an order mid-pipeline. `victims`:
/// four processing orders; the validator's (the fourth) is not its
/// concern (the validator's jobs name challenges), so it must end `valid`.
fn poisons(victims: &[String]) -> Vec<Poison> {
    use proto::queues::{CAA_CHECKER, CT_SUBMITTER, SIGNER, VALIDATOR};
    let nothing = "poison-names-nothing".to_string();
    let order = |i: usize| victims[i].clone();
    let decodable = |queue: &'static str, job: Job, victim: Option<String>| Poison {
        queue,
        body: Envelope::new(job.clone()).encode(),
        job: Some(job),
        victim,
    };
    let garbage = |queue: &'static str, body: Vec<u8>| Poison {
        queue,
        body,
        job: None,
        victim: None,
    };
    vec![
        garbage(VALIDATOR, b"\xc1 not MessagePack at all".to_vec()),
        decodable(
            VALIDATOR,
            Job::ValidateChallenge {
                challenge_id: nothing.clone(),
            },
            None,
        ),
        decodable(VALIDATOR, Job::SignPrecert { order_id: order(3) }, None),
        garbage(CAA_CHECKER, unknown_kind_envelope()),
        decodable(
            CAA_CHECKER,
            Job::CheckCaa {
                order_id: nothing.clone(),
            },
            None,
        ),
        decodable(
            CAA_CHECKER,
            Job::SignFinal { order_id: order(0) },
            Some(order(0)),
        ),
        garbage(
            SIGNER,
            Envelope::new(Job::SignPrecert { order_id: order(1) }).encode()[..9].to_vec(),
        ),
        decodable(
            SIGNER,
            Job::SignPrecert {
                order_id: nothing.clone(),
            },
            None,
        ),
        decodable(SIGNER, Job::SubmitCt { order_id: order(1) }, Some(order(1))),
        garbage(CT_SUBMITTER, unknown_kind_envelope()),
        decodable(CT_SUBMITTER, Job::SubmitCt { order_id: nothing }, None),
        decodable(
            CT_SUBMITTER,
            Job::CheckCaa { order_id: order(2) },
            Some(order(2)),
        ),
    ]
}

/// Publishes `body` to the cluster's stage queue `queue` with confirms.
async fn publish_raw(cluster: &Cluster, queue: &str, body: &[u8]) {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    let connection =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
            .await
            .expect("connect to RabbitMQ");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let prefix = cluster.queue_prefix();
    let exchange = format!("{prefix}{}", queue::amqp::EXCHANGE);
    let routing_key = format!("{prefix}{queue}");
    let confirmation = channel
        .basic_publish(
            exchange.as_str().into(),
            routing_key.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            body,
            lapin::BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish")
        .await
        .expect("confirmation");
    assert!(
        matches!(confirmation, lapin::Confirmation::Ack(None)),
        "{routing_key}: {confirmation:?}"
    );
    let _ = connection.close(200, "poisoned".into()).await;
}

/// The cluster's `kiln.dead`, read without taking anything, once it holds
/// at least `want` letters (at most 60 s).
async fn dead_letters(cluster: &Cluster, want: usize) -> Vec<queue::amqp::DeadLetter> {
    let options = queue::AmqpOptions {
        prefix: cluster.queue_prefix().to_string(),
        ..queue::AmqpOptions::default()
    };
    let queue = queue::amqp::AmqpQueue::connect(&amqp_url(), options)
        .await
        .expect("connect to RabbitMQ");
    let until = Instant::now() + Duration::from_secs(60);
    let letters = loop {
        let letters = queue.dead_letters(1000).await.expect("kiln.dead read");
        if letters.len() >= want || Instant::now() > until {
            break letters;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    queue.close().await;
    letters
}

/// `n` orders processing at an early step (CAA recheck, precertificate, CT
/// submission that just started), as soon as there are so many.
async fn processing_orders(cluster: &Cluster, accounts: &[Account], n: usize) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        let orders = orders_in_db(&cluster.store, accounts).await;
        let mut early: Vec<(usize, i64, String)> = orders
            .values()
            .filter(|o| o.status.as_str() == "processing")
            .filter_map(|o| {
                let rank = ["check-caa", "sign-precert", "submit-ct"]
                    .iter()
                    .position(|s| o.step.is_some_and(|step| step.as_str() == *s))?;
                Some((rank, -o.step_deadline.unwrap_or(0), o.id.clone()))
            })
            .collect();
        if early.len() >= n {
            early.sort();
            return early.into_iter().take(n).map(|(_, _, id)| id).collect();
        }
        assert!(
            Instant::now() < until,
            "[{}] never {n} orders processing at once",
            cluster.label
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_message_in_each_queue_is_dead_lettered() {
    let _alone = ONE_AT_A_TIME.lock().await;
    // Slower CT logs: the orders named stay at submit-ct for seconds.
    let cluster = fault_cluster("poison", &[("KILN_CT_LATENCY_MS", "3000")]).await;
    let load = Load {
        orders: 30,
        ..TOGETHER
    };
    let label = cluster.label.clone();
    let accounts = create_accounts(&cluster, load.accounts).await;
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let clients = run_orders(&cluster, &accounts, &label, &load, progress.clone());
    let fault = async {
        let victims = processing_orders(&cluster, &accounts, 4).await;
        let poisons = poisons(&victims);
        for poison in &poisons {
            publish_raw(&cluster, poison.queue, &poison.body).await;
        }
        at(
            &cluster,
            &accounts,
            &progress,
            started,
            &format!("{} poison messages published", poisons.len()),
        )
        .await;
        (victims, poisons)
    };
    let (runs, (victims, poisons)) = tokio::join!(clients, fault);
    let took = started.elapsed();
    let tally = check_invariants(&cluster, &accounts, &runs, false).await;
    let letters = dead_letters(&cluster, poisons.len()).await;
    let verdict = audit::cluster(&cluster).await;
    fault_report(&cluster, &tally, &verdict, took);
    for letter in &letters {
        println!(
            "[{label}] kiln.dead: {} (given up by {}) {:?}: {}",
            letter.queue,
            letter.stage.as_deref().unwrap_or("the broker"),
            letter.job.as_ref().map(Job::name),
            letter.reason
        );
    }
    tally.assert_holds(&label);
    assert_eq!((tally.stuck, tally.lost), (0, 0), "[{label}] stuck, lost");
    verdict.assert_clean(&label);

    // Each poison is in kiln.dead, and nothing else is.
    let mut unmatched: Vec<&queue::amqp::DeadLetter> = letters.iter().collect();
    for poison in &poisons {
        let found = unmatched.iter().position(|l| match (&poison.job, &l.job) {
            // Filed under the stage that gave up on it: for a job of the
            // wrong kind, not the one its kind routes to.
            (Some(job), Ok(dead)) => {
                job == dead
                    && l.reason.starts_with("permanent:")
                    && l.stage.as_deref() == poison.queue.strip_prefix("kiln.")
            }
            (None, Err(_)) => l.queue == poison.queue,
            _ => false,
        });
        let Some(found) = found else {
            panic!(
                "[{label}] {:?} published to {} is not in kiln.dead: {letters:#?}",
                poison.job, poison.queue
            )
        };
        unmatched.remove(found);
    }
    assert!(
        unmatched.is_empty(),
        "[{label}] other dead letters: {unmatched:#?}"
    );

    // The database recorded each of them too (what the audit accounts
    // dead letters by), the jobs under the orders they name.
    let (recorded, _) = db_read("dead letters", || {
        cluster.store.audit_dead_letter_counts(i64::MIN)
    })
    .await;
    assert_eq!(
        usize::try_from(recorded).unwrap(),
        letters.len(),
        "[{label}] dead letters recorded in the database, and in kiln.dead"
    );
    for poison in &poisons {
        if let (Some(job), Some(victim)) = (&poison.job, &poison.victim) {
            let rows = db_read("dead letters of", || cluster.store.dead_letters_of(victim)).await;
            assert!(
                rows.iter()
                    .any(|r| r.job == job.name() && r.reason.starts_with("permanent:")),
                "[{label}] {victim}'s {} is not recorded dead: {rows:?}",
                job.name()
            );
        }
    }

    // The orders named end invalid with serverInternal; every other ends valid.
    let named: Vec<&String> = poisons.iter().filter_map(|p| p.victim.as_ref()).collect();
    let orders = orders_in_db(&cluster.store, &accounts).await;
    for run in &runs {
        let id = run.order_id.as_ref().expect("created");
        let order = &orders[id];
        if named.contains(&id) {
            assert_eq!(order.status.as_str(), "invalid", "{}: {order:?}", run.name);
            let problem = order.error.as_ref().expect("a stored problem");
            assert_eq!(problem.kind.acme_name(), "serverInternal", "{problem:?}");
        } else {
            assert!(
                matches!(run.outcome, Outcome::Valid { .. }),
                "[{label}] {} (not named by a poison{}) ended {:?}",
                run.name,
                if *id == victims[3] {
                    ", but for the validator's"
                } else {
                    ""
                },
                run.outcome
            );
        }
    }
    assert_eq!(tally.valid, load.orders - named.len(), "[{label}] valid");
    let counts = job_counts(&cluster).await;
    println!("[{label}] jobs ok per replica: {}", format_counts(&counts));
    assert!(
        counts.iter().all(|(_, c)| c.is_some()),
        "every worker alive: {counts:?}"
    );
    assert_consumers(&cluster, &[], Duration::from_secs(10)).await;
}

// ---- 7. fifty finalizes of one order --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_finalizes_of_one_order_one_wins() {
    const RACERS: usize = 50;
    let _alone = ONE_AT_A_TIME.lock().await;
    let cluster = fault_cluster("finalize-race", &[]).await;
    let label = cluster.label.clone();
    let acme = Arc::new(raw_acme(&cluster, &cluster.directory_url).await);
    let account = Arc::new(acme.create_account().await);
    let name = "race.finalize-race.kiln-dist.test";
    let order = acme.new_order(&account, &[name]).await;
    let thumbprint = thumbprint(&account.key);
    for authz_url in order.authorizations() {
        let (challenge_url, token) = acme.http01_challenge(&account, &authz_url).await;
        cluster.http01.set(&token, &format!("{token}.{thumbprint}"));
        acme.post_kid(&account, &challenge_url, Some(&json!({})))
            .await
            .expect_status(200);
    }
    let order = Arc::new(acme.poll_order(&account, &order.url, "ready").await);
    let started = Instant::now();
    // Each racer signs its request with a nonce of its own and a CSR of its
    // own key, then all send at once.
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let mut racers = JoinSet::new();
    for _ in 0..RACERS {
        let (acme, account, order, barrier) = (
            acme.clone(),
            account.clone(),
            order.clone(),
            barrier.clone(),
        );
        racers.spawn(async move {
            let key = p256();
            let csr = csr_der_with_key(&[name], &key);
            let url = order.finalize_url();
            let header = acme.kid_header(&account.url, &url).await;
            let payload = json!({"csr": b64(&csr)}).to_string();
            barrier.wait().await;
            let reply = acme
                .post_signed(&account.key, &url, header, payload.as_bytes())
                .await;
            (key.public_key_to_der().expect("SPKI"), reply)
        });
    }
    let replies = racers.join_all().await;
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for (_, reply) in &replies {
        let what = match reply.status {
            200 => format!("200 {}", reply.body["status"].as_str().unwrap_or("?")),
            status => format!("{status} {}", reply.body["type"].as_str().unwrap_or("?")),
        };
        *answers.entry(what).or_default() += 1;
    }
    let winners: Vec<&Vec<u8>> = replies
        .iter()
        .filter(|(_, r)| r.status == 200)
        .map(|(key, _)| key)
        .collect();
    let not_ready = "403 urn:ietf:params:acme:error:orderNotReady";
    let valid = acme.poll_order(&account, &order.url, "valid").await;
    let cert_url = valid.body["certificate"].as_str().expect("certificate URL");
    let download = acme.post_as_get(&account, cert_url).await;
    download.expect_status(200);
    let leaf = parse_chain(&download.text)[0].clone();
    let order_id = kiln_tests::dist::last_segment(&order.url);
    let rows = db_read("certificates", || {
        cluster.store.certificates_for_order(&order_id)
    })
    .await;
    let verdict = audit::cluster(&cluster).await;
    let (retried, redriven) = reruns(&cluster);
    println!(
        "[{label}] attempted {RACERS} finalize POSTs of one order / {} won / answers {answers:?} / \
         order valid in {:.1}s / {} certificate rows / stuck 0 / redelivered {} / audit: {}",
        winners.len(),
        started.elapsed().as_secs_f64(),
        rows.len(),
        retried + redriven,
        verdict.summary()
    );
    assert_eq!(
        winners.len(),
        1,
        "[{label}] exactly one finalize wins: {answers:?}"
    );
    assert_eq!(answers.get("200 processing"), Some(&1), "{answers:?}");
    assert_eq!(answers.get(not_ready), Some(&(RACERS - 1)), "{answers:?}");
    let leaf_key = leaf
        .public_key()
        .expect("key")
        .public_key_to_der()
        .expect("SPKI");
    assert_eq!(
        &leaf_key, winners[0],
        "the certificate is for the winner's CSR"
    );
    let serials: Vec<(&String, CertificateState)> =
        rows.iter().map(|r| (&r.serial, r.state)).collect();
    assert_eq!(rows.len(), 1, "[{label}] one certificate row: {serials:?}");
    assert_eq!(rows[0].state, CertificateState::Issued);
    verdict.assert_clean(&label);
}
