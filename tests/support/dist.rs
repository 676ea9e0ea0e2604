//! What the distributed scenarios (`tests/distributed.rs`,
//! `tests/distributed_faults.rs`) share: clients that drive orders through
//! a [`Cluster`] the way a careful ACME client does (instant-acme, every
//! failed request retried, so only Kiln decides how an order ends), the
//! invariants every scenario ends with, and the figures each reports:
//! attempted / valid / invalid / stuck / lost / redelivered, with the
//! audit's verdict.

use crate::acme::Acme;
use crate::audit::Verdict;
use crate::cluster::Cluster;
use crate::instant::new_account;
use crate::metrics::{Scrape, try_scrape};
use crate::{Http01Responder, csr_der, has_poison, parse_chain, verify_chain};
use instant_acme::{
    Account, AuthorizationStatus, ChallengeStatus, ChallengeType, Identifier, NewOrder, Order,
    OrderStatus, Problem,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use store::{CertificateState, Store};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub const REPLICAS: usize = 2;
/// Bound on one ACME request (the api may wait up to its 30 s publish
/// timeout while the broker is down).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(45);
/// Between two polls of a pending or processing order or a failed request.
pub const POLL: Duration = Duration::from_millis(500);
/// How long the database may still show an order `processing` once the
/// clients are done; past it the order counts as stuck.
pub const SETTLE_BOUND: Duration = Duration::from_secs(120);
/// The step timeout (sweeper re-drive) of the fault scenarios.
pub const FAULT_STEP_TIMEOUT_SECS: &str = "5";
/// The fake CT logs' answer time in the fault scenarios: orders then spend
/// seconds in the pipeline, so a fault finds many of them mid-way.
pub const FAULT_CT_LATENCY_MS: &str = "1500";

/// The fault scenarios' cluster: a short step timeout (the sweeper
/// re-drives a lost job quickly) and slow CT logs (a fault finds the
/// pipeline full); `extra_env` adds to or overrides them.
pub async fn fault_cluster(label: &str, extra_env: &[(&str, &str)]) -> Cluster {
    let mut env = vec![
        ("KILN_RUNNER__STEP_TIMEOUT_SECS", FAULT_STEP_TIMEOUT_SECS),
        ("KILN_CT_LATENCY_MS", FAULT_CT_LATENCY_MS),
    ];
    for (k, v) in extra_env {
        env.retain(|(key, _)| key != k);
        env.push((k, v));
    }
    Cluster::start(label, REPLICAS, &env).await
}

// ---- the cluster's work ------------------------------------------------------------

/// Worker jobs per process from each admin port's /metrics; `None` for a
/// process that does not answer (killed).
pub async fn job_counts(cluster: &Cluster) -> Vec<(String, Option<JobCounts>)> {
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
pub struct JobCounts {
    pub ok: u64,
    pub retry: u64,
    pub gave_up: u64,
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

pub fn format_counts(counts: &[(String, Option<JobCounts>)]) -> String {
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

pub fn rabbitmqctl(args: &[&str]) -> Result<(), String> {
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

// ---- the clients ------------------------------------------------------------------

/// What the clients have seen so far, for the fault scenarios' reports.
#[derive(Default)]
pub struct Progress {
    pub finalized: AtomicUsize,
    pub valid: AtomicUsize,
    pub invalid: AtomicUsize,
}

impl Progress {
    pub fn valid(&self) -> usize {
        self.valid.load(Ordering::SeqCst)
    }

    /// Finalized but not yet seen `valid` or `invalid`.
    pub fn in_flight(&self) -> usize {
        let done = self.valid.load(Ordering::SeqCst) + self.invalid.load(Ordering::SeqCst);
        self.finalized.load(Ordering::SeqCst).saturating_sub(done)
    }
}

#[derive(Debug)]
pub enum Outcome {
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
pub struct OrderRun {
    pub name: String,
    pub order_id: Option<String>,
    /// The order status in the finalize answer.
    pub finalize_answer: Option<OrderStatus>,
    pub outcome: Outcome,
    /// Requests that failed and were retried.
    pub errors: Vec<String>,
}

pub struct Load {
    pub orders: usize,
    pub accounts: usize,
    pub concurrency: usize,
    /// Hold every client at `ready` until all are, then finalize together
    /// (needs `concurrency >= orders`).
    pub finalize_together: bool,
    /// Per order, from its start.
    pub deadline: Duration,
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

pub fn last_segment(url: &str) -> String {
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

pub async fn create_accounts(cluster: &Cluster, n: usize) -> Vec<Account> {
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
pub async fn run_orders(
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

/// A raw ACME client (`crate::acme`) for the api at `directory_url`.
pub async fn raw_acme(cluster: &Cluster, directory_url: &str) -> Acme {
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

pub fn https_client(cluster: &Cluster) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(cluster.root_pem.as_bytes()).expect("root pem");
    reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .expect("client")
}

// ---- the checks ---------------------------------------------------------------------

/// A read of the cluster's database, retried for a while on errors (the
/// test shares PostgreSQL's connection limit with the cluster, and a fault
/// scenario may restart it).
pub async fn db_read<T, F, Fut>(what: &str, read: F) -> T
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

/// Every order of the test's accounts in the database once none is
/// `processing` any more, or `SETTLE_BOUND` passed: then also the ids of
/// those still `processing` (stuck).
async fn settled_orders(
    store: &Store,
    accounts: &[Account],
) -> (HashMap<String, store::Order>, Vec<String>) {
    let until = Instant::now() + SETTLE_BOUND;
    loop {
        let orders = orders_in_db(store, accounts).await;
        let mut processing: Vec<String> = orders
            .iter()
            .filter(|(_, o)| o.status.as_str() == "processing")
            .map(|(id, _)| id.clone())
            .collect();
        if processing.is_empty() || Instant::now() > until {
            processing.sort();
            return (orders, processing);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Every order of the test's accounts, by id.
pub async fn orders_in_db(store: &Store, accounts: &[Account]) -> HashMap<String, store::Order> {
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
pub async fn status_counts(store: &Store, accounts: &[Account]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for order in orders_in_db(store, accounts).await.values() {
        *counts.entry(order.status.as_str()).or_default() += 1;
    }
    counts
}

pub fn format_statuses(counts: &BTreeMap<&'static str, usize>) -> String {
    counts
        .iter()
        .map(|(status, n)| format!("{n} {status}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn statuses_in_db(store: &Store, accounts: &[Account]) -> String {
    format_statuses(&status_counts(store, accounts).await)
}

/// Waits until the database shows the run in full swing — some orders
/// `valid` and many `processing` (20, or at least one once a quarter are
/// valid) — and returns how the orders stood then.
pub async fn wait_mid_run(store: &Store, accounts: &[Account], orders: usize) -> String {
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        let counts = status_counts(store, accounts).await;
        let valid = counts.get("valid").copied().unwrap_or(0);
        let processing = counts.get("processing").copied().unwrap_or(0);
        let many = (orders / 2).min(20);
        if valid >= 5 && processing >= 1 && (processing >= many || valid >= orders / 4) {
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
pub fn der_serial(der: &[u8]) -> String {
    let cert = openssl::x509::X509::from_der(der).expect("certificate DER parses");
    let serial = cert.serial_number().to_bn().expect("serial").to_vec();
    serial.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Default, Debug)]
pub struct Tally {
    /// Orders the clients set out to make.
    pub attempted: usize,
    pub valid: usize,
    pub invalid: usize,
    /// Still `processing` `SETTLE_BOUND` after the clients finished.
    pub stuck: usize,
    /// Orders whose client never learnt an outcome Kiln stored: never
    /// created, missing from the database, or given up on by the client
    /// while the database shows them anything but `processing`.
    pub lost: usize,
    /// Certificate rows in the database for the test's orders.
    pub rows: usize,
    /// Rows not issued (an issuance started over after a fault).
    pub not_issued: BTreeMap<String, usize>,
    pub client_errors: usize,
    /// Every broken invariant, one line each.
    pub violations: Vec<String>,
}

impl Tally {
    /// Panics with the first violations, if there is any.
    pub fn assert_holds(&self, label: &str) {
        assert!(
            self.violations.is_empty(),
            "[{label}] {} invariant violations ({} stuck, {} lost), first ones:\n{}",
            self.violations.len(),
            self.stuck,
            self.lost,
            self.violations
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// The invariants every scenario ends with, gathered into the tally (see
/// [`Tally::assert_holds`]); `strict`: no fault happened, so every order
/// must be `valid` with exactly one certificate row and no client request
/// may have failed.
pub async fn check_invariants(
    cluster: &Cluster,
    accounts: &[Account],
    runs: &[OrderRun],
    strict: bool,
) -> Tally {
    let (orders, stuck) = settled_orders(&cluster.store, accounts).await;
    let mut tally = Tally {
        attempted: runs.len(),
        stuck: stuck.len(),
        ..Tally::default()
    };
    let violations = &mut tally.violations;
    for id in &stuck {
        violations.push(format!(
            "order {id} still processing {SETTLE_BOUND:?} after the clients finished"
        ));
    }
    let mut row_serials = HashSet::new();
    let mut der_serials = HashSet::new();
    for run in runs {
        tally.client_errors += run.errors.len();
        if strict && !run.errors.is_empty() {
            violations.push(format!("{}: requests failed: {:?}", run.name, run.errors));
        }
        let Some(id) = &run.order_id else {
            tally.lost += 1;
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
            tally.lost += 1;
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
            // Counted as stuck already.
            (Outcome::Unfinished(_), "processing") => {}
            (Outcome::Unfinished(why), status) => {
                tally.lost += 1;
                violations.push(format!(
                    "{}: the client gave up ({why}); database says {status}",
                    run.name
                ))
            }
            (outcome, status) => violations.push(format!(
                "{}: client ended with {outcome:?}, database says {status}",
                run.name
            )),
        }
    }
    // Orders the clients lost track of (a new-order whose answer was lost)
    // must not be stuck either; `settled_orders` covered them.
    let known: HashSet<&String> = runs.iter().filter_map(|r| r.order_id.as_ref()).collect();
    let untracked = orders.keys().filter(|id| !known.contains(id)).count();
    if untracked > 0 {
        println!(
            "[{}] {untracked} orders created but not tracked by a client",
            cluster.label
        );
    }
    tally
}

pub fn summary(label: &str, load: &Load, tally: &Tally, took: Duration) {
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

/// Jobs run again, from every process's log (the killed ones' included):
/// retried by a stage's runner, and re-driven by the sweeper once a step
/// was past its deadline. (Deliveries RabbitMQ hands out again after a
/// consumer died are not visible without its management plugin; the
/// stage re-running them shows in neither count.)
pub fn reruns(cluster: &Cluster) -> (usize, usize) {
    (
        cluster.log_lines_containing("job will be retried"),
        cluster.log_lines_containing("re-driving overdue"),
    )
}

/// The fault scenarios' report line: attempted / valid / invalid / stuck /
/// lost / redelivered, and the audit's verdict.
pub fn fault_report(cluster: &Cluster, tally: &Tally, verdict: &Verdict, took: Duration) {
    let (retried, redriven) = reruns(cluster);
    println!(
        "[{}] attempted {} / valid {} / invalid {} / stuck {} / lost {} / redelivered {} \
         ({retried} retried by a stage, {redriven} re-driven by the sweeper) in {:.1}s; \
         {} certificate rows ({:?} not issued); {} client requests retried; audit: {}",
        cluster.label,
        tally.attempted,
        tally.valid,
        tally.invalid,
        tally.stuck,
        tally.lost,
        retried + redriven,
        took.as_secs_f64(),
        tally.rows,
        tally.not_issued,
        tally.client_errors,
        verdict.summary(),
    );
}
