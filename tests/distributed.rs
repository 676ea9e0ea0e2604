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
//!
//! Isolation: each test has a cluster of its own (`kiln_tests::cluster`:
//! database, queue prefix, data directory and ports, all cleaned up; on
//! failure every process's log is kept and its path printed). Test 3 stops
//! the machine's broker, so the tests of this file run one at a time
//! (`ONE_AT_A_TIME`). They need root (for `rabbitmqctl`), RabbitMQ on
//! 127.0.0.1:5672 (or `AMQP_URL`) and PostgreSQL on 127.0.0.1:5432 (trust).
//! Run with `--nocapture` to see each scenario's summary; set
//! `KILN_DIST_KEEP_LOGS=1` to keep every process's log after a passing run.

use instant_acme::{
    Account, AuthorizationStatus, ChallengeStatus, ChallengeType, Identifier, NewOrder, Order,
    OrderStatus, Problem,
};
use kiln_tests::acme::{Acme, p256};
use kiln_tests::cluster::{Cluster, WORKERS};
use kiln_tests::instant::new_account;
use kiln_tests::metrics::{Scrape, try_scrape};
use kiln_tests::{Http01Responder, csr_der, has_poison, parse_chain, verify_chain};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use store::{CertificateState, Store};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;

/// Test 3 stops the machine's broker: the tests here never overlap.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

const REPLICAS: usize = 2;
/// Bound on one ACME request (the api may wait up to its 30 s publish
/// timeout while the broker is down).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(45);
/// Between two polls of a pending or processing order or a failed request.
const POLL: Duration = Duration::from_millis(500);
/// How long the database may still show an order `processing` once the
/// clients are done.
const SETTLE_BOUND: Duration = Duration::from_secs(120);
/// The step timeout (sweeper re-drive) of the fault scenarios.
const FAULT_STEP_TIMEOUT_SECS: &str = "5";
/// The fake CT logs' answer time in the fault scenarios: orders then spend
/// seconds in the pipeline, so a fault finds many of them mid-way.
const FAULT_CT_LATENCY_MS: &str = "1500";

// ---- the cluster's work ------------------------------------------------------------

/// Worker jobs per process from each admin port's /metrics; `None` for a
/// process that does not answer (killed).
async fn job_counts(cluster: &Cluster) -> Vec<(String, Option<JobCounts>)> {
    let mut counts = Vec::new();
    for (name, addr) in cluster.admin_ports() {
        if name == "api" {
            continue;
        }
        let metrics = scrape_with_retries(&addr).await;
        counts.push((name, metrics.map(|m| JobCounts::of(&m))));
    }
    counts
}

/// A live worker busy reconnecting (after a broker restart) may miss one
/// scrape; three misses a second apart mean it is gone.
async fn scrape_with_retries(addr: &str) -> Option<Scrape> {
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if let Ok(metrics) = try_scrape(addr).await {
            return Some(metrics);
        }
    }
    None
}

/// `kiln_jobs_total` of one process, summed per outcome.
#[derive(Clone, Debug)]
struct JobCounts {
    ok: u64,
    retry: u64,
    gave_up: u64,
}

impl JobCounts {
    fn of(metrics: &Scrape) -> JobCounts {
        let total = |outcome: &str| {
            let values = metrics.values("kiln_jobs_total", &[("outcome", outcome)]);
            values.iter().sum::<f64>() as u64
        };
        JobCounts {
            ok: total("ok"),
            retry: total("retry"),
            gave_up: total("gave_up"),
        }
    }
}

fn format_counts(counts: &[(String, Option<JobCounts>)]) -> String {
    counts
        .iter()
        .map(|(name, c)| match c {
            Some(c) if c.retry + c.gave_up == 0 => format!("{name} {}", c.ok),
            Some(c) => format!(
                "{name} {} (+{} retried, {} gave up)",
                c.ok, c.retry, c.gave_up
            ),
            None => format!("{name} (gone)"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Stops the RabbitMQ application; dropping it starts it again (also when
/// the test fails meanwhile).
struct BrokerStop {
    stopped: bool,
}

fn rabbitmqctl(args: &[&str]) -> Result<(), String> {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .map_err(|e| format!("rabbitmqctl {args:?}: {e} (needs rabbitmqctl and root)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "rabbitmqctl {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
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

// ---- the clients ------------------------------------------------------------------

/// What the clients have seen so far, for the fault scenarios' reports.
#[derive(Default)]
struct Progress {
    finalized: AtomicUsize,
    valid: AtomicUsize,
    invalid: AtomicUsize,
}

impl Progress {
    fn valid(&self) -> usize {
        self.valid.load(Ordering::SeqCst)
    }

    /// Finalized but not yet seen `valid` or `invalid`.
    fn in_flight(&self) -> usize {
        let done = self.valid.load(Ordering::SeqCst) + self.invalid.load(Ordering::SeqCst);
        self.finalized.load(Ordering::SeqCst).saturating_sub(done)
    }
}

#[derive(Debug)]
enum Outcome {
    Valid {
        pem: String,
    },
    Invalid {
        problem: Option<Problem>,
    },
    /// The client's deadline passed first.
    Unfinished(String),
}

/// What one client saw of one order.
#[derive(Debug)]
struct OrderRun {
    name: String,
    order_id: Option<String>,
    /// The order status in the finalize answer.
    finalize_answer: Option<OrderStatus>,
    outcome: Outcome,
    /// Requests that failed and were retried.
    errors: Vec<String>,
}

struct Load {
    orders: usize,
    accounts: usize,
    concurrency: usize,
    /// Hold every client at `ready` until all are, then finalize together
    /// (needs `concurrency >= orders`).
    finalize_together: bool,
    /// Per order, from its start.
    deadline: Duration,
}

/// Holds the clients at `ready` until every order is (or `within` passed),
/// so they all finalize at once and a fault finds the pipeline full.
struct FinalizeGate {
    want: usize,
    arrived: AtomicUsize,
    open: tokio::sync::watch::Sender<bool>,
    within: Duration,
}

impl FinalizeGate {
    fn arrive(&self) {
        if self.arrived.fetch_add(1, Ordering::SeqCst) + 1 >= self.want {
            self.open.send_replace(true);
        }
    }
}

/// A client's place at the gate; an order that ends before `ready` arrives
/// when its pass is dropped, so the others are not kept waiting.
struct GatePass(Option<Arc<FinalizeGate>>);

impl GatePass {
    async fn wait(&mut self) {
        if let Some(gate) = self.0.take() {
            gate.arrive();
            let mut open = gate.open.subscribe();
            let _ = tokio::time::timeout(gate.within, open.wait_for(|open| *open)).await;
        }
    }
}

impl Drop for GatePass {
    fn drop(&mut self) {
        if let Some(gate) = self.0.take() {
            gate.arrive();
        }
    }
}

fn last_segment(url: &str) -> String {
    url.rsplit('/').next().unwrap_or_default().to_string()
}

async fn timed<T>(
    what: &str,
    request: impl Future<Output = Result<T, instant_acme::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer in {REQUEST_TIMEOUT:?}")),
    }
}

async fn create_accounts(cluster: &Cluster, n: usize) -> Vec<Account> {
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (root, url) = (cluster.root_pem_path.clone(), cluster.directory_url.clone());
        tasks.spawn(async move {
            let contact = format!("mailto:client{i}@kiln-dist.test");
            (i, new_account(&root, &url, &[&contact]).await)
        });
    }
    let mut accounts: Vec<(usize, Account)> = tasks.join_all().await;
    accounts.sort_by_key(|(i, _)| *i);
    accounts.into_iter().map(|(_, a)| a).collect()
}

/// Runs `load.orders` orders over the accounts, at most `load.concurrency`
/// at once, each to `valid` or `invalid` (or its deadline).
async fn run_orders(
    cluster: &Cluster,
    accounts: &[Account],
    tag: &str,
    load: &Load,
    progress: Arc<Progress>,
) -> Vec<OrderRun> {
    let permits = Arc::new(Semaphore::new(load.concurrency));
    let gate = load.finalize_together.then(|| {
        assert!(load.concurrency >= load.orders, "a gate needs every client");
        Arc::new(FinalizeGate {
            want: load.orders,
            arrived: AtomicUsize::new(0),
            open: tokio::sync::watch::Sender::new(false),
            within: Duration::from_secs(60),
        })
    });
    let mut tasks = JoinSet::new();
    for i in 0..load.orders {
        let account = accounts[i % accounts.len()].clone();
        let name = format!("o{i}.{tag}.kiln-dist.test");
        let (http01, progress, permits) =
            (cluster.http01.clone(), progress.clone(), permits.clone());
        let pass = GatePass(gate.clone());
        let deadline = load.deadline;
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore");
            let deadline = Instant::now() + deadline;
            one_order(account, name, http01, progress, pass, deadline).await
        });
    }
    tasks.join_all().await
}

/// One client's order, the way a careful ACME client does it: answer the
/// http-01 challenge, finalize once `ready`, poll through `processing`,
/// download once `valid`. A failed request is retried (the next poll shows
/// where the order stands), so only Kiln decides how the order ends.
async fn one_order(
    account: Account,
    name: String,
    http01: Http01Responder,
    progress: Arc<Progress>,
    mut pass: GatePass,
    deadline: Instant,
) -> OrderRun {
    let mut run = OrderRun {
        name: name.clone(),
        order_id: None,
        finalize_answer: None,
        outcome: Outcome::Unfinished("no order created".into()),
        errors: Vec::new(),
    };
    let ids = [Identifier::Dns(name.clone())];
    let mut order = loop {
        match timed("new-order", account.new_order(&NewOrder::new(&ids))).await {
            Ok(order) => break order,
            Err(e) if Instant::now() < deadline => {
                run.errors.push(e);
                tokio::time::sleep(POLL).await;
            }
            Err(e) => {
                run.errors.push(e);
                return run;
            }
        }
    };
    run.order_id = Some(last_segment(order.url()));
    let csr = csr_der(&[&name]);
    loop {
        if Instant::now() > deadline {
            run.outcome = Outcome::Unfinished(format!(
                "still {:?} at the client's deadline",
                order.state().status
            ));
            return run;
        }
        let status = order.state().status;
        let step = match status {
            OrderStatus::Pending => answer_challenges(&mut order, &http01).await,
            OrderStatus::Ready => {
                pass.wait().await;
                let finalized = timed("finalize", order.finalize_csr(&csr)).await;
                if finalized.is_ok() {
                    run.finalize_answer = Some(order.state().status);
                    progress.finalized.fetch_add(1, Ordering::SeqCst);
                }
                finalized
            }
            OrderStatus::Processing => Ok(()),
            OrderStatus::Valid => match timed("download", order.certificate()).await {
                Ok(Some(pem)) => {
                    progress.valid.fetch_add(1, Ordering::SeqCst);
                    run.outcome = Outcome::Valid { pem };
                    return run;
                }
                Ok(None) => Err("download: no certificate for a valid order".into()),
                Err(e) => Err(e),
            },
            OrderStatus::Invalid => {
                progress.invalid.fetch_add(1, Ordering::SeqCst);
                run.outcome = Outcome::Invalid {
                    problem: order.state().error.clone(),
                };
                return run;
            }
        };
        if let Err(e) = step {
            run.errors.push(e);
        }
        tokio::time::sleep(POLL).await;
        if let Err(e) = timed("poll order", order.refresh()).await {
            run.errors.push(e);
        }
    }
}

/// Publishes the key authorization of every pending authorization's http-01
/// challenge and tells Kiln it is ready (unless it already is processing).
async fn answer_challenges(order: &mut Order, http01: &Http01Responder) -> Result<(), String> {
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz.map_err(|e| format!("authorization: {e}"))?;
        if authz.status != AuthorizationStatus::Pending {
            continue;
        }
        let mut challenge = authz
            .challenge(ChallengeType::Http01)
            .ok_or("no http-01 challenge offered")?;
        http01.set(&challenge.token, challenge.key_authorization().as_str());
        if challenge.status == ChallengeStatus::Pending {
            timed("challenge", challenge.set_ready()).await?;
        }
    }
    Ok(())
}

// ---- the checks ---------------------------------------------------------------------

/// A read of the cluster's database, retried for a while on errors (the
/// test shares PostgreSQL's connection limit with the cluster).
async fn db_read<T, F, Fut>(what: &str, read: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = store::Result<T>>,
{
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        match read().await {
            Ok(value) => return value,
            Err(e) if Instant::now() < until => {
                eprintln!("database read ({what}) failed, retrying: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => panic!("database read ({what}): {e}"),
        }
    }
}

/// Every order of the test's accounts in the database, once none is
/// `processing` any more (at most `SETTLE_BOUND`).
async fn settled_orders(store: &Store, accounts: &[Account]) -> HashMap<String, store::Order> {
    let until = Instant::now() + SETTLE_BOUND;
    loop {
        let orders = orders_in_db(store, accounts).await;
        let processing: Vec<&String> = orders
            .iter()
            .filter(|(_, o)| o.status.as_str() == "processing")
            .map(|(id, _)| id)
            .collect();
        if processing.is_empty() {
            return orders;
        }
        assert!(
            Instant::now() < until,
            "{} orders still processing {SETTLE_BOUND:?} after the clients finished: {:?}",
            processing.len(),
            processing.iter().take(10).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Every order of the test's accounts, by id.
async fn orders_in_db(store: &Store, accounts: &[Account]) -> HashMap<String, store::Order> {
    let mut orders = HashMap::new();
    for account in accounts {
        let account_id = last_segment(account.id());
        let ids = db_read("order ids", || {
            store.order_ids_for_account(&account_id, 0, 100_000)
        })
        .await;
        for id in ids {
            let order = db_read("order", || store.order(&id))
                .await
                .expect("order row");
            orders.insert(id, order);
        }
    }
    orders
}

/// How many of the test's orders the database shows at each status.
async fn status_counts(store: &Store, accounts: &[Account]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for order in orders_in_db(store, accounts).await.values() {
        *counts.entry(order.status.as_str()).or_default() += 1;
    }
    counts
}

fn format_statuses(counts: &BTreeMap<&'static str, usize>) -> String {
    counts
        .iter()
        .map(|(status, n)| format!("{n} {status}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn statuses_in_db(store: &Store, accounts: &[Account]) -> String {
    format_statuses(&status_counts(store, accounts).await)
}

/// Waits until the database shows the run in full swing — some orders
/// `valid` and many `processing` (20, or at least one once a quarter are
/// valid) — and returns how the orders stood then.
async fn wait_mid_run(store: &Store, accounts: &[Account], orders: usize) -> String {
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        let counts = status_counts(store, accounts).await;
        let valid = counts.get("valid").copied().unwrap_or(0);
        let processing = counts.get("processing").copied().unwrap_or(0);
        if valid >= 5 && processing >= 1 && (processing >= 20 || valid >= orders / 4) {
            return format_statuses(&counts);
        }
        assert!(
            Instant::now() < until,
            "the run never got into full swing: {}",
            format_statuses(&counts)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lowercase hex of a certificate's serial number.
fn der_serial(der: &[u8]) -> String {
    let cert = openssl::x509::X509::from_der(der).expect("certificate DER parses");
    let serial = cert.serial_number().to_bn().expect("serial").to_vec();
    serial.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Default, Debug)]
struct Tally {
    valid: usize,
    invalid: usize,
    /// Certificate rows in the database for the test's orders.
    rows: usize,
    /// Rows not issued (an issuance started over after a fault).
    not_issued: BTreeMap<String, usize>,
    client_errors: usize,
}

/// The invariants every scenario ends with; `strict`: no fault happened,
/// so every order must be `valid` with exactly one certificate row and no
/// client request may have failed.
async fn check_invariants(
    cluster: &Cluster,
    accounts: &[Account],
    runs: &[OrderRun],
    strict: bool,
) -> Tally {
    let orders = settled_orders(&cluster.store, accounts).await;
    let mut violations: Vec<String> = Vec::new();
    let mut tally = Tally::default();
    let mut row_serials = HashSet::new();
    let mut der_serials = HashSet::new();
    for run in runs {
        tally.client_errors += run.errors.len();
        if strict && !run.errors.is_empty() {
            violations.push(format!("{}: requests failed: {:?}", run.name, run.errors));
        }
        let Some(id) = &run.order_id else {
            violations.push(format!("{}: never created: {:?}", run.name, run.errors));
            continue;
        };
        match run.finalize_answer {
            Some(OrderStatus::Processing) => {}
            None if !strict => {} // the answer was lost; polling showed the rest
            other => violations.push(format!(
                "{}: finalize answered {other:?}, not processing",
                run.name
            )),
        }
        let Some(order) = orders.get(id) else {
            violations.push(format!("{}: order {id} not in the database", run.name));
            continue;
        };
        let rows = db_read("certificates", || cluster.store.certificates_for_order(id)).await;
        tally.rows += rows.len();
        for row in &rows {
            if !row_serials.insert(row.serial.clone()) {
                violations.push(format!("serial {} on two rows", row.serial));
            }
            if row.state != CertificateState::Issued {
                *tally
                    .not_issued
                    .entry(format!("{:?}", row.state))
                    .or_default() += 1;
            }
            // A precertificate's serial is its row's, and no two
            // precertificates share one: no serial was signed twice.
            if let Some(precert) = &row.precert_der {
                let serial = der_serial(precert);
                if serial != row.serial {
                    violations.push(format!(
                        "row {} holds a precertificate with serial {serial}",
                        row.serial
                    ));
                }
                if !der_serials.insert(serial.clone()) {
                    violations.push(format!("serial {serial} signed in two precertificates"));
                }
            }
        }
        let issued: Vec<_> = rows
            .iter()
            .filter(|r| r.state == CertificateState::Issued)
            .collect();
        if issued.len() > 1 {
            violations.push(format!(
                "{}: {} issued certificates for one order",
                run.name,
                issued.len()
            ));
        }
        if strict && rows.len() != 1 {
            violations.push(format!(
                "{}: {} certificate rows, want exactly one: {:?}",
                run.name,
                rows.len(),
                rows.iter()
                    .map(|r| (&r.serial, r.state))
                    .collect::<Vec<_>>()
            ));
        }
        match (&run.outcome, order.status.as_str()) {
            (Outcome::Valid { pem }, "valid") => {
                tally.valid += 1;
                let [cert] = issued.as_slice() else {
                    violations.push(format!("{}: valid without one issued row", run.name));
                    continue;
                };
                if order.certificate_serial.as_deref() != Some(cert.serial.as_str()) {
                    violations.push(format!(
                        "{}: order names serial {:?}, issued row is {}",
                        run.name, order.certificate_serial, cert.serial
                    ));
                }
                let (Some(precert), Some(final_der)) = (&cert.precert_der, &cert.final_der) else {
                    violations.push(format!("{}: issued row lacks a DER", run.name));
                    continue;
                };
                if der_serial(final_der) != der_serial(precert) {
                    violations.push(format!(
                        "{}: final serial {} is not the precertificate's {}",
                        run.name,
                        der_serial(final_der),
                        der_serial(precert)
                    ));
                }
                if !has_poison(precert) || has_poison(final_der) {
                    violations.push(format!("{}: poison on the wrong certificate", run.name));
                }
                let chain = parse_chain(pem);
                if let Err(e) = verify_chain(&chain, &cluster.root_pem) {
                    violations.push(format!("{}: chain does not verify: {e}", run.name));
                }
                let leaf = chain[0].to_der().expect("leaf DER");
                if leaf != *final_der {
                    violations.push(format!(
                        "{}: downloaded certificate is not the stored final one",
                        run.name
                    ));
                }
            }
            (Outcome::Invalid { problem }, "invalid") => {
                tally.invalid += 1;
                if strict {
                    violations.push(format!("{}: invalid: {problem:?}", run.name));
                }
                if problem.is_none() {
                    violations.push(format!("{}: client saw invalid without error", run.name));
                }
                if order.error.is_none() {
                    violations.push(format!("{}: invalid with no stored error", run.name));
                }
                if !issued.is_empty() {
                    violations.push(format!("{}: invalid but issued", run.name));
                }
            }
            (Outcome::Unfinished(why), status) => violations.push(format!(
                "{}: the client gave up ({why}); database says {status}",
                run.name
            )),
            (outcome, status) => violations.push(format!(
                "{}: client ended with {outcome:?}, database says {status}",
                run.name
            )),
        }
    }
    // Orders the clients lost track of (a new-order whose answer was lost)
    // must not be stuck either; `settled_orders` checked none is processing.
    let known: HashSet<&String> = runs.iter().filter_map(|r| r.order_id.as_ref()).collect();
    let untracked = orders.keys().filter(|id| !known.contains(id)).count();
    if untracked > 0 {
        println!(
            "[{}] {untracked} orders created but not tracked by a client",
            cluster.label
        );
    }
    assert!(
        violations.is_empty(),
        "[{}] {} invariant violations, first ones:\n{}",
        cluster.label,
        violations.len(),
        violations
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    tally
}

fn summary(label: &str, load: &Load, tally: &Tally, took: Duration) {
    println!(
        "[{label}] {} orders ({} accounts, {} at once): {} valid, {} invalid in {:.1}s; \
         {} certificate rows ({} not issued: {:?}); {} client requests retried",
        load.orders,
        load.accounts,
        load.concurrency,
        tally.valid,
        tally.invalid,
        took.as_secs_f64(),
        tally.rows,
        tally.not_issued.values().sum::<usize>(),
        tally.not_issued,
        tally.client_errors,
    );
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

fn https_client(cluster: &Cluster) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(cluster.root_pem.as_bytes()).expect("root pem");
    reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .expect("client")
}

/// A raw ACME client (`kiln_tests::acme`) for the api at `directory_url`.
async fn raw_acme(cluster: &Cluster, directory_url: &str) -> Acme {
    let http = https_client(cluster);
    let directory: serde_json::Value = http
        .get(directory_url)
        .send()
        .await
        .expect("GET directory")
        .json()
        .await
        .expect("directory JSON");
    let base_url = directory_url.trim_end_matches("/directory").to_string();
    Acme {
        http,
        directory,
        base_url,
    }
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

/// The fault scenarios' cluster: a short step timeout (the sweeper
/// re-drives a lost job quickly) and slow CT logs (a fault finds the
/// pipeline full).
async fn fault_cluster(label: &str) -> Cluster {
    Cluster::start(
        label,
        REPLICAS,
        &[
            ("KILN_RUNNER__STEP_TIMEOUT_SECS", FAULT_STEP_TIMEOUT_SECS),
            ("KILN_CT_LATENCY_MS", FAULT_CT_LATENCY_MS),
        ],
    )
    .await
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
    let cluster = fault_cluster(label).await;
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
    println!(
        "[{label}] jobs ok per replica: {}",
        format_counts(&job_counts(&cluster).await)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_stopped_for_ten_seconds_mid_run() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let label = "broker-stop";
    let cluster = fault_cluster(label).await;
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
}
