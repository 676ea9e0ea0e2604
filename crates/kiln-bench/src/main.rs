//! `kiln-bench`: an ACME load generator. It drives N complete issuances at
//! concurrency C against any ACME directory (Kiln, Pebble, …): accounts are
//! created before the clock starts; then, per order: new order, challenge
//! answered (its own http-01 responder, or pebble-challtestsrv's `/set-txt`
//! for dns-01), finalize, poll (honouring `Retry-After`, or at a fixed
//! interval), download. It reports orders/s, finalize POST latency,
//! finalize→valid latency, whole-issuance latency and errors by kind, as
//! text or JSON.
//!
//! Loopback use only: it refuses a directory or challenge-server URL whose
//! host is not a loopback address or `localhost`.

mod stats;
mod transport;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, Order,
    OrderStatus,
};
use serde::Serialize;
use stats::Summary;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use transport::Transport;

#[derive(Parser, Debug, Clone)]
#[command(
    version,
    about = "ACME load generator: N complete issuances at concurrency C"
)]
struct Args {
    /// ACME directory URL (loopback only).
    #[arg(long)]
    directory: String,
    /// PEM root(s) to trust for the CA's HTTPS API (Kiln: DATA_DIR/root.pem).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Complete issuances to drive (bounded: at most 100000).
    #[arg(long, short = 'n', default_value_t = 200)]
    orders: usize,
    /// Issuances in flight at once.
    #[arg(long, short = 'c', default_value_t = 16)]
    concurrency: usize,
    /// ACME accounts, created before the clock starts (default: = concurrency).
    #[arg(long)]
    accounts: Option<usize>,
    /// Issuances run before the clock starts (warms connections and caches).
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    /// DNS names per order.
    #[arg(long, default_value_t = 1)]
    names_per_order: usize,
    /// Names are `<run>-<i>-<j>.<domain>`.
    #[arg(long, default_value = "kiln-bench.test")]
    domain: String,
    #[arg(long, value_enum, default_value_t = Challenge::Http01)]
    challenge: Challenge,
    /// Where the http-01 responder listens: the address the CA validates on.
    #[arg(long, default_value = "127.0.0.1:5002")]
    http01_listen: SocketAddr,
    /// dns-01: pebble-challtestsrv's management API, e.g. http://127.0.0.1:8055.
    #[arg(long)]
    challtestsrv: Option<String>,
    /// Poll every MS milliseconds, ignoring Retry-After. Without it the
    /// driver honours Retry-After and polls every --default-poll-ms when a
    /// response has none.
    #[arg(long)]
    poll_interval: Option<u64>,
    /// Poll interval when honouring Retry-After and a response carries none.
    #[arg(long, default_value_t = 50)]
    default_poll_ms: u64,
    /// One order gives up (counted as an error) after this long.
    #[arg(long, default_value_t = 120)]
    order_timeout_s: u64,
    /// The whole run stops after this long, whatever is left.
    #[arg(long, default_value_t = 1800)]
    run_timeout_s: u64,
    /// Tokio worker threads of the driver.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// A label copied into the report (e.g. "kiln-embedded round 3").
    #[arg(long, default_value = "")]
    label: String,
    /// Print the report as JSON on stdout (the text summary goes to stderr).
    #[arg(long)]
    json: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Challenge {
    #[value(name = "http-01")]
    Http01,
    #[value(name = "dns-01")]
    Dns01,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.orders > 100_000 || args.concurrency == 0 || args.concurrency > 4096 {
        bail!("--orders must be ≤ 100000 and --concurrency in 1..=4096");
    }
    require_loopback(&args.directory).context("--directory")?;
    if let Some(url) = &args.challtestsrv {
        require_loopback(url).context("--challtestsrv")?;
    }
    if !args.http01_listen.ip().is_loopback() {
        bail!("--http01-listen must be a loopback address");
    }
    if args.challenge == Challenge::Dns01 && args.challtestsrv.is_none() {
        bail!("dns-01 needs --challtestsrv");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(args.clone()))?;
    let text = report.text();
    if args.json {
        eprint!("{text}");
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{text}");
    }
    Ok(())
}

fn require_loopback(url: &str) -> anyhow::Result<()> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("parsing {url}"))?;
    let host = parsed.host_str().unwrap_or("");
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ok = host == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !ok {
        bail!("{url}: only loopback targets are allowed");
    }
    Ok(())
}

/// One order's plan, made before the clock starts.
struct Plan {
    names: Vec<String>,
    csr_der: Vec<u8>,
}

/// What one finished issuance measured.
struct Sample {
    finalize_post: Duration,
    finalize_to_valid: Duration,
    validation: Duration,
    issuance: Duration,
    finalize_status: &'static str,
    polls: u32,
}

/// Where an issuance failed, and how.
struct Failure {
    stage: &'static str,
    error: String,
    /// Set when the order got as far as an answered finalize POST.
    finalize_post: Option<Duration>,
}

impl Failure {
    fn at(stage: &'static str) -> impl FnOnce(instant_acme::Error) -> Failure {
        move |e| Failure {
            stage,
            error: classify(&e),
            finalize_post: None,
        }
    }
    fn new(stage: &'static str, error: &str) -> Failure {
        Failure {
            stage,
            error: error.to_string(),
            finalize_post: None,
        }
    }
    fn kind(&self) -> String {
        format!("{}: {}", self.stage, self.error)
    }
}

fn classify(e: &instant_acme::Error) -> String {
    match e {
        instant_acme::Error::Api(p) => {
            let t = p.r#type.as_deref().unwrap_or("problem");
            t.trim_start_matches("urn:ietf:params:acme:error:")
                .to_string()
        }
        instant_acme::Error::Timeout(_) => "timeout".into(),
        instant_acme::Error::Json(_) => "json".into(),
        instant_acme::Error::Other(inner) => {
            if inner.downcast_ref::<reqwest::Error>().is_some() {
                "transport".into()
            } else {
                "other".into()
            }
        }
        other => format!("{other}").chars().take(60).collect(),
    }
}

/// How the driver waits between polls.
#[derive(Clone, Copy)]
enum PollPolicy {
    Fixed(Duration),
    RetryAfter { fallback: Duration },
}

impl PollPolicy {
    fn delay(&self, transport: &Transport, url: &str) -> Duration {
        match *self {
            PollPolicy::Fixed(d) => d,
            PollPolicy::RetryAfter { fallback } => {
                transport.take_retry_after(url).unwrap_or(fallback)
            }
        }
    }
    fn describe(&self) -> String {
        match self {
            PollPolicy::Fixed(d) => format!("fixed {} ms", d.as_millis()),
            PollPolicy::RetryAfter { fallback } => {
                format!("Retry-After (else {} ms)", fallback.as_millis())
            }
        }
    }
}

/// Publishes challenge responses.
#[derive(Clone)]
enum Responder {
    Http(Arc<Mutex<HashMap<String, String>>>),
    Dns {
        client: reqwest::Client,
        base: String,
    },
}

impl Responder {
    async fn publish(&self, name: &str, token: &str, key_auth: &instant_acme::KeyAuthorization) {
        match self {
            Responder::Http(map) => {
                map.lock()
                    .expect("lock")
                    .insert(token.to_string(), key_auth.as_str().to_string());
            }
            Responder::Dns { client, base } => {
                let host = format!("_acme-challenge.{}.", name.trim_start_matches("*."));
                let _ = client
                    .post(format!("{base}/set-txt"))
                    .json(&serde_json::json!({"host": host, "value": key_auth.dns_value()}))
                    .send()
                    .await;
            }
        }
    }
    async fn withdraw(&self, name: &str, token: &str) {
        match self {
            Responder::Http(map) => {
                map.lock().expect("lock").remove(token);
            }
            Responder::Dns { client, base } => {
                let host = format!("_acme-challenge.{}.", name.trim_start_matches("*."));
                let _ = client
                    .post(format!("{base}/clear-txt"))
                    .json(&serde_json::json!({ "host": host }))
                    .send()
                    .await;
            }
        }
    }
}

async fn start_http01(listen: SocketAddr) -> anyhow::Result<Arc<Mutex<HashMap<String, String>>>> {
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    let tokens: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    async fn answer(
        State(tokens): State<Arc<Mutex<HashMap<String, String>>>>,
        Path(token): Path<String>,
    ) -> Result<String, StatusCode> {
        tokens
            .lock()
            .expect("lock")
            .get(&token)
            .cloned()
            .ok_or(StatusCode::NOT_FOUND)
    }
    let app = axum::Router::new()
        .route(
            "/.well-known/acme-challenge/{token}",
            axum::routing::get(answer),
        )
        .with_state(tokens.clone());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the http-01 responder on {listen}"))?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(tokens)
}

fn make_csr(names: &[String]) -> anyhow::Result<Vec<u8>> {
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::stack::Stack;
    use openssl::x509::X509ReqBuilder;
    use openssl::x509::extension::SubjectAlternativeName;
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut builder = X509ReqBuilder::new()?;
    builder.set_pubkey(&key)?;
    let mut san = SubjectAlternativeName::new();
    for name in names {
        san.dns(name);
    }
    let context = builder.x509v3_context(None);
    let mut extensions = Stack::new()?;
    extensions.push(san.build(&context)?)?;
    builder.add_extensions(&extensions)?;
    builder.sign(&key, MessageDigest::sha256())?;
    Ok(builder.build().to_der()?)
}

struct Ctx {
    transport: Transport,
    responder: Responder,
    challenge: ChallengeType,
    poll: PollPolicy,
    order_timeout: Duration,
}

async fn run(args: Args) -> anyhow::Result<Report> {
    let root = match &args.root {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
        None => None,
    };
    let transport = Transport::new(root.as_deref(), args.concurrency.max(8))?;
    let responder = match args.challenge {
        Challenge::Http01 => Responder::Http(start_http01(args.http01_listen).await?),
        Challenge::Dns01 => Responder::Dns {
            client: reqwest::Client::new(),
            base: args
                .challtestsrv
                .clone()
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_string(),
        },
    };
    let poll = match args.poll_interval {
        Some(ms) => PollPolicy::Fixed(Duration::from_millis(ms)),
        None => PollPolicy::RetryAfter {
            fallback: Duration::from_millis(args.default_poll_ms),
        },
    };
    let ctx = Arc::new(Ctx {
        transport: transport.clone(),
        responder,
        challenge: match args.challenge {
            Challenge::Http01 => ChallengeType::Http01,
            Challenge::Dns01 => ChallengeType::Dns01,
        },
        poll,
        order_timeout: Duration::from_secs(args.order_timeout_s),
    });

    // Before the clock: accounts, names and CSRs.
    let run_id = format!(
        "r{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_micros()
            % 0xffff_ffff
    );
    let account_count = args.accounts.unwrap_or(args.concurrency).max(1);
    let mut accounts = Vec::with_capacity(account_count);
    let setup_start = Instant::now();
    let mut creating = futures::stream::FuturesOrdered::new();
    for _ in 0..account_count {
        let t = transport.clone();
        let dir = args.directory.clone();
        creating.push_back(async move {
            Account::builder_with_http(Box::new(t))
                .create(
                    &NewAccount {
                        contact: &[],
                        terms_of_service_agreed: true,
                        only_return_existing: false,
                    },
                    dir,
                    None,
                )
                .await
        });
    }
    {
        use futures::StreamExt;
        while let Some(created) = creating.next().await {
            let (account, _) = created.context("creating an account")?;
            accounts.push(Arc::new(account));
        }
    }
    let plan = |prefix: &str, count: usize| -> anyhow::Result<Vec<Plan>> {
        (0..count)
            .map(|i| {
                let names: Vec<String> = (0..args.names_per_order)
                    .map(|j| format!("{run_id}-{prefix}{i}-{j}.{}", args.domain))
                    .collect();
                let csr_der = make_csr(&names)?;
                Ok(Plan { names, csr_der })
            })
            .collect()
    };
    let warm = plan("w", args.warmup)?;
    let plans = plan("o", args.orders)?;
    let setup = setup_start.elapsed();

    if !warm.is_empty() {
        let (_, warm_results) =
            drive(&ctx, &accounts, warm, args.concurrency, args.run_timeout_s).await;
        let failed = warm_results.iter().filter(|r| r.is_err()).count();
        if failed > 0 {
            eprintln!("kiln-bench: warm-up: {failed} issuances failed");
        }
    }

    let (wall, results) = drive(&ctx, &accounts, plans, args.concurrency, args.run_timeout_s).await;

    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut finalize_status: BTreeMap<String, usize> = BTreeMap::new();
    let (mut fin_post, mut fin_valid, mut validation, mut issuance) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut polls = 0u64;
    let mut fin_post_failed = Vec::new();
    for r in &results {
        match r {
            Ok(s) => {
                fin_post.push(s.finalize_post);
                fin_valid.push(s.finalize_to_valid);
                validation.push(s.validation);
                issuance.push(s.issuance);
                polls += u64::from(s.polls);
                *finalize_status
                    .entry(s.finalize_status.to_string())
                    .or_default() += 1;
            }
            Err(f) => {
                *errors.entry(f.kind()).or_default() += 1;
                if let Some(d) = f.finalize_post {
                    fin_post_failed.push(d);
                }
            }
        }
    }
    let ok = fin_post.len();
    let mut fin_post_all: Vec<Duration> =
        fin_post.iter().chain(&fin_post_failed).copied().collect();
    let not_run = args.orders.saturating_sub(results.len());
    if not_run > 0 {
        *errors
            .entry("run: timeout before start".into())
            .or_default() += not_run;
    }
    Ok(Report {
        label: args.label.clone(),
        directory: args.directory.clone(),
        challenge: match args.challenge {
            Challenge::Http01 => "http-01".into(),
            Challenge::Dns01 => "dns-01".into(),
        },
        poll: poll.describe(),
        orders: args.orders,
        concurrency: args.concurrency,
        accounts: account_count,
        names_per_order: args.names_per_order,
        warmup: args.warmup,
        setup_s: setup.as_secs_f64(),
        ok,
        failed: args.orders - ok,
        wall_s: wall.as_secs_f64(),
        orders_per_s: if wall.is_zero() {
            0.0
        } else {
            ok as f64 / wall.as_secs_f64()
        },
        finalize_post_ms: Summary::of(&mut fin_post),
        finalize_post_all_ms: Summary::of(&mut fin_post_all),
        finalize_to_valid_ms: Summary::of(&mut fin_valid),
        validation_ms: Summary::of(&mut validation),
        issuance_ms: Summary::of(&mut issuance),
        polls_per_order: if ok == 0 {
            0.0
        } else {
            polls as f64 / ok as f64
        },
        finalize_status,
        errors,
    })
}

/// Runs `plans` through `concurrency` workers; returns the wall time from
/// the first start to the last finish, and each result.
async fn drive(
    ctx: &Arc<Ctx>,
    accounts: &[Arc<Account>],
    plans: Vec<Plan>,
    concurrency: usize,
    run_timeout_s: u64,
) -> (Duration, Vec<Result<Sample, Failure>>) {
    let plans = Arc::new(plans);
    let next = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Vec::with_capacity(plans.len())));
    let deadline = Instant::now() + Duration::from_secs(run_timeout_s);
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..concurrency.min(plans.len().max(1)) {
        let (ctx, plans, next, results) =
            (ctx.clone(), plans.clone(), next.clone(), results.clone());
        let accounts: Vec<Arc<Account>> = accounts.to_vec();
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= plans.len() || Instant::now() >= deadline {
                    break;
                }
                let account = &accounts[(w + i) % accounts.len()];
                let outcome = match tokio::time::timeout(
                    ctx.order_timeout + Duration::from_secs(10),
                    issue(&ctx, account, &plans[i]),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err(Failure::new("order", "stalled")),
                };
                results.lock().expect("lock").push(outcome);
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let wall = start.elapsed();
    let results = std::mem::take(&mut *results.lock().expect("lock"));
    (wall, results)
}

/// One complete issuance.
async fn issue(ctx: &Ctx, account: &Account, plan: &Plan) -> Result<Sample, Failure> {
    let start = Instant::now();
    let deadline = start + ctx.order_timeout;
    let ids: Vec<Identifier> = plan
        .names
        .iter()
        .map(|n| Identifier::Dns(n.clone()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&ids))
        .await
        .map_err(Failure::at("new-order"))?;
    let mut polls = 0u32;

    // Answer each pending authorization's challenge.
    let validation_start = Instant::now();
    let mut published = Vec::new();
    let mut first_wait = None;
    {
        let mut authzs = order.authorizations();
        while let Some(authz) = authzs.next().await {
            let mut authz = authz.map_err(Failure::at("authz"))?;
            if authz.status == AuthorizationStatus::Valid {
                continue;
            }
            let name = authz.identifier().to_string();
            let mut challenge = authz
                .challenge(ctx.challenge.clone())
                .ok_or(Failure::new("authz", "challenge type not offered"))?;
            let key_auth = challenge.key_authorization();
            ctx.responder
                .publish(&name, &challenge.token, &key_auth)
                .await;
            published.push((name, challenge.token.clone()));
            challenge
                .set_ready()
                .await
                .map_err(Failure::at("challenge"))?;
            first_wait = Some(ctx.poll.delay(&ctx.transport, &challenge.url));
        }
    }
    let order_url = order.url().to_string();
    if order.state().status == OrderStatus::Pending {
        let mut wait = first_wait.unwrap_or(Duration::ZERO);
        loop {
            if Instant::now() + wait > deadline {
                withdraw(ctx, &published).await;
                return Err(Failure::new("validation", "timeout"));
            }
            tokio::time::sleep(wait).await;
            polls += 1;
            let state = order
                .refresh()
                .await
                .map_err(Failure::at("validation-poll"));
            let state = match state {
                Ok(s) => s,
                Err(f) => {
                    withdraw(ctx, &published).await;
                    return Err(f);
                }
            };
            match state.status {
                OrderStatus::Ready | OrderStatus::Processing | OrderStatus::Valid => break,
                OrderStatus::Invalid => {
                    withdraw(ctx, &published).await;
                    return Err(Failure::new("validation", "invalid"));
                }
                OrderStatus::Pending => {}
            }
            wait = ctx.poll.delay(&ctx.transport, &order_url);
        }
    }
    withdraw(ctx, &published).await;
    let validation = validation_start.elapsed();

    // Finalize, timed on its own.
    let finalize_start = Instant::now();
    order
        .finalize_csr(&plan.csr_der)
        .await
        .map_err(Failure::at("finalize"))?;
    let finalize_post = finalize_start.elapsed();
    let finalize_status = status_name(order.state().status);
    let finalize_to_valid = after_finalize(ctx, &mut order, deadline, &mut polls, finalize_start)
        .await
        .map_err(|mut f| {
            f.finalize_post = Some(finalize_post);
            f
        })?;
    Ok(Sample {
        finalize_post,
        finalize_to_valid,
        validation,
        issuance: start.elapsed(),
        finalize_status,
        polls,
    })
}

/// Polls a finalized order to `valid` and downloads the certificate;
/// returns finalize→valid.
async fn after_finalize(
    ctx: &Ctx,
    order: &mut Order,
    deadline: Instant,
    polls: &mut u32,
    finalize_start: Instant,
) -> Result<Duration, Failure> {
    let order_url = order.url().to_string();
    let mut wait = ctx
        .poll
        .delay(&ctx.transport, order.state().finalize.as_str());
    let mut status = order.state().status;
    while status == OrderStatus::Processing || status == OrderStatus::Ready {
        if Instant::now() + wait > deadline {
            return Err(Failure::new("finalize-poll", "timeout"));
        }
        tokio::time::sleep(wait).await;
        *polls += 1;
        status = order
            .refresh()
            .await
            .map_err(Failure::at("finalize-poll"))?
            .status;
        wait = ctx.poll.delay(&ctx.transport, &order_url);
    }
    let finalize_to_valid = finalize_start.elapsed();
    if status != OrderStatus::Valid {
        let error = order
            .state()
            .error
            .as_ref()
            .and_then(|p| p.r#type.clone())
            .map(|t| {
                t.trim_start_matches("urn:ietf:params:acme:error:")
                    .to_string()
            })
            .unwrap_or_else(|| status_name(status).to_string());
        return Err(Failure {
            stage: "order",
            error,
            finalize_post: None,
        });
    }
    let pem = download(order).await?;
    if !pem.contains("BEGIN CERTIFICATE") {
        return Err(Failure::new("download", "no certificate"));
    }
    Ok(finalize_to_valid)
}

async fn download(order: &mut Order) -> Result<String, Failure> {
    match order.certificate().await {
        Ok(Some(pem)) => Ok(pem),
        Ok(None) => Err(Failure::new("download", "still processing")),
        Err(e) => Err(Failure::at("download")(e)),
    }
}

async fn withdraw(ctx: &Ctx, published: &[(String, String)]) {
    for (name, token) in published {
        ctx.responder.withdraw(name, token).await;
    }
}

fn status_name(s: OrderStatus) -> &'static str {
    match s {
        OrderStatus::Pending => "pending",
        OrderStatus::Ready => "ready",
        OrderStatus::Processing => "processing",
        OrderStatus::Valid => "valid",
        OrderStatus::Invalid => "invalid",
    }
}

#[derive(Serialize)]
struct Report {
    label: String,
    directory: String,
    challenge: String,
    poll: String,
    orders: usize,
    concurrency: usize,
    accounts: usize,
    names_per_order: usize,
    warmup: usize,
    /// Accounts and CSRs, before the clock.
    setup_s: f64,
    ok: usize,
    failed: usize,
    wall_s: f64,
    orders_per_s: f64,
    finalize_post_ms: Summary,
    /// Every answered finalize POST, including orders that failed later.
    finalize_post_all_ms: Summary,
    finalize_to_valid_ms: Summary,
    /// Challenge POSTs to order `ready`.
    validation_ms: Summary,
    /// New order to certificate downloaded.
    issuance_ms: Summary,
    polls_per_order: f64,
    /// The order status the finalize POST answered with.
    finalize_status: BTreeMap<String, usize>,
    errors: BTreeMap<String, usize>,
}

impl Report {
    fn text(&self) -> String {
        let mut out = String::new();
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "kiln-bench {}{}  {}  {}  poll: {}",
            self.label,
            if self.label.is_empty() { "" } else { " " },
            self.directory,
            self.challenge,
            self.poll
        );
        let _ = writeln!(
            out,
            "  issued {}/{} at C={} ({} accounts) in {:.2} s: {:.1} orders/s",
            self.ok, self.orders, self.concurrency, self.accounts, self.wall_s, self.orders_per_s
        );
        let line = |out: &mut String, name: &str, s: &Summary| {
            let _ = writeln!(
                out,
                "  {name:<20} p50 {:>8.1}  p95 {:>8.1}  p99 {:>8.1}  max {:>8.1} ms",
                s.p50, s.p95, s.p99, s.max
            );
        };
        line(&mut out, "finalize POST", &self.finalize_post_ms);
        if self.finalize_post_all_ms.count > self.finalize_post_ms.count {
            line(&mut out, "finalize POST (all)", &self.finalize_post_all_ms);
        }
        line(&mut out, "finalize→valid", &self.finalize_to_valid_ms);
        line(&mut out, "challenge→ready", &self.validation_ms);
        line(&mut out, "whole issuance", &self.issuance_ms);
        let statuses: Vec<String> = self
            .finalize_status
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            out,
            "  finalize answered: {}; {:.1} polls/order",
            statuses.join(", "),
            self.polls_per_order
        );
        if self.errors.is_empty() {
            let _ = writeln!(out, "  errors: none");
        } else {
            let _ = writeln!(out, "  errors:");
            for (k, v) in &self.errors {
                let _ = writeln!(out, "    {v:>6}  {k}");
            }
        }
        out
    }
}
