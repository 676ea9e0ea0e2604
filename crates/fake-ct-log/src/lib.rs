//! A small but real RFC 6962 log front end: it checks submissions, signs SCTs and tree heads
//! with a P-256 key and keeps a Merkle tree of accepted entries in memory. Knobs make it slow,
//! flaky, down or picky, at start-up or at run time through `/knobs`.

pub mod cli;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ct::{AddChainRequest, AddChainResponse, CtError, LogSigner};
use openssl::pkey::{PKey, Private};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum FakeLogError {
    #[error(transparent)]
    Ct(#[from] CtError),
    #[error("openssl: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
    #[error("invalid knobs: {0}")]
    InvalidKnobs(&'static str),
}

/// Start-up configuration; everything but the key can be changed later with [`FakeLog::set_knobs`].
pub struct FakeLogConfig {
    /// The log's P-256 signing key.
    pub key: PKey<Private>,
    /// Added before answering any CT endpoint.
    pub latency: Duration,
    /// Fraction (0..=1) of submissions answered with 500.
    pub error_rate: f64,
    /// Answer 503 on every CT endpoint.
    pub down: bool,
    /// DNS names (case-insensitive) whose certificates are refused with 400.
    pub reject_names: Vec<String>,
}

impl FakeLogConfig {
    /// A well-behaved log with this key.
    pub fn new(key: PKey<Private>) -> Self {
        Self {
            key,
            latency: Duration::ZERO,
            error_rate: 0.0,
            down: false,
            reject_names: Vec::new(),
        }
    }

    /// A well-behaved log with a fresh random key.
    pub fn generate() -> Result<Self, FakeLogError> {
        Ok(Self::new(LogSigner::generate()?.key().clone()))
    }
}

/// The run-time knobs, also the JSON body of `GET /knobs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Knobs {
    pub latency_ms: u64,
    pub error_rate: f64,
    pub down: bool,
    pub reject_names: Vec<String>,
}

impl Knobs {
    fn validate(&self) -> Result<(), FakeLogError> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(FakeLogError::InvalidKnobs(
                "error_rate must be within 0..=1",
            ));
        }
        Ok(())
    }
}

/// Body of `POST /knobs`: absent fields keep their value.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct KnobsUpdate {
    pub latency_ms: Option<u64>,
    pub error_rate: Option<f64>,
    pub down: Option<bool>,
    pub reject_names: Option<Vec<String>>,
}

/// What happened to submissions (`add-chain` and `add-pre-chain`) so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SubmissionStats {
    /// Answered with an SCT.
    pub accepted: u64,
    /// Of `accepted`, final certificates (`add-chain`); the rest were precertificates.
    pub accepted_x509: u64,
    /// Answered 400: bad input or a rejected name.
    pub rejected: u64,
    /// Answered 500 because of `error_rate`.
    pub injected_errors: u64,
    /// Answered 503 because the log is down.
    pub unavailable: u64,
}

impl SubmissionStats {
    pub fn total(&self) -> u64 {
        self.accepted + self.rejected + self.injected_errors + self.unavailable
    }
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    accepted_x509: AtomicU64,
    rejected: AtomicU64,
    injected_errors: AtomicU64,
    unavailable: AtomicU64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EntryKind {
    X509,
    Precert,
}

pub struct FakeLog {
    signer: LogSigner,
    knobs: Mutex<Knobs>,
    /// Leaf hashes of accepted entries, in order.
    leaves: Mutex<Vec<[u8; 32]>>,
    counters: Counters,
}

/// A std mutex is enough: no lock is held across an await, and a panic elsewhere must not
/// wedge the log, so poisoning is ignored.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Uniform in [0, 1) from OpenSSL's CSPRNG.
fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if openssl::rand::rand_bytes(&mut bytes).is_err() {
        // Without randomness, behave: never inject an error.
        return 1.0;
    }
    (u64::from_be_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// A 400 answer's reason.
struct Rejection(String);

impl<E: std::fmt::Display> From<E> for Rejection {
    fn from(e: E) -> Self {
        Rejection(e.to_string())
    }
}

impl FakeLog {
    pub fn new(config: FakeLogConfig) -> Result<Self, FakeLogError> {
        let knobs = Knobs {
            latency_ms: u64::try_from(config.latency.as_millis()).unwrap_or(u64::MAX),
            error_rate: config.error_rate,
            down: config.down,
            reject_names: config.reject_names,
        };
        knobs.validate()?;
        Ok(Self {
            signer: LogSigner::new(config.key)?,
            knobs: Mutex::new(knobs),
            leaves: Mutex::new(Vec::new()),
            counters: Counters::default(),
        })
    }

    /// The log's DER SubjectPublicKeyInfo, which clients need to verify its SCTs.
    pub fn public_key_der(&self) -> &[u8] {
        self.signer.public_key_der()
    }

    pub fn log_id(&self) -> [u8; 32] {
        self.signer.log_id()
    }

    pub fn knobs(&self) -> Knobs {
        lock(&self.knobs).clone()
    }

    pub fn set_knobs(&self, knobs: Knobs) -> Result<(), FakeLogError> {
        knobs.validate()?;
        *lock(&self.knobs) = knobs;
        Ok(())
    }

    /// Applies the fields present in `update` and returns the resulting knobs.
    pub fn update_knobs(&self, update: KnobsUpdate) -> Result<Knobs, FakeLogError> {
        let mut knobs = lock(&self.knobs);
        let mut next = knobs.clone();
        if let Some(v) = update.latency_ms {
            next.latency_ms = v;
        }
        if let Some(v) = update.error_rate {
            next.error_rate = v;
        }
        if let Some(v) = update.down {
            next.down = v;
        }
        if let Some(v) = update.reject_names {
            next.reject_names = v;
        }
        next.validate()?;
        *knobs = next.clone();
        Ok(next)
    }

    pub fn submissions(&self) -> SubmissionStats {
        let c = &self.counters;
        SubmissionStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            accepted_x509: c.accepted_x509.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            injected_errors: c.injected_errors.load(Ordering::Relaxed),
            unavailable: c.unavailable.load(Ordering::Relaxed),
        }
    }

    /// Number of accepted entries.
    pub fn tree_size(&self) -> u64 {
        lock(&self.leaves).len() as u64
    }

    /// The current signed tree head over every accepted entry.
    pub fn signed_tree_head(&self) -> Result<ct::GetSthResponse, CtError> {
        let (size, root) = {
            let leaves = lock(&self.leaves);
            (leaves.len() as u64, ct::merkle_tree_hash(&leaves))
        };
        self.signer.sign_tree_head(now_ms(), size, &root)
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/ct/v1/add-chain", post(add_chain))
            .route("/ct/v1/add-pre-chain", post(add_pre_chain))
            .route("/ct/v1/get-sth", get(get_sth))
            .route("/knobs", get(get_knobs).post(post_knobs))
            .with_state(self)
    }

    /// Checks a submission and, if acceptable, signs it and appends it to the tree.
    fn accept(
        &self,
        body: &[u8],
        kind: EntryKind,
        reject_names: &[String],
    ) -> Result<AddChainResponse, Rejection> {
        let request: AddChainRequest = serde_json::from_slice(body)?;
        let chain = request.decode_chain()?;
        let (leaf_der, issuer_der) = match (kind, chain.as_slice()) {
            (_, [leaf, issuer, ..]) => (leaf, Some(issuer)),
            (EntryKind::X509, [leaf]) => (leaf, None),
            (EntryKind::Precert, _) => {
                return Err(Rejection(
                    "add-pre-chain needs the precert and its issuer".into(),
                ));
            }
            (EntryKind::X509, []) => return Err(Rejection("empty chain".into())),
        };
        match (kind, ct::is_precertificate(leaf_der)?) {
            (EntryKind::Precert, false) => {
                return Err(Rejection(
                    "chain[0] has no critical poison extension".into(),
                ));
            }
            (EntryKind::X509, true) => {
                return Err(Rejection(
                    "chain[0] is a precertificate; use add-pre-chain".into(),
                ));
            }
            _ => {}
        }
        // Parsed with x509-parser and checked through `pkix`, not OpenSSL's
        // `X509::from_der` (~200 us per certificate with OpenSSL 3): a
        // benchmark's CPU belongs to the CA, not to its test logs.
        let (_, leaf) = x509_parser::parse_x509_certificate(leaf_der)
            .map_err(|_| Rejection("chain[0] is not a DER certificate".into()))?;
        if let Some(issuer_der) = issuer_der {
            // A real log checks the whole chain up to its roots; checking the first link
            // catches a submitter that sends the wrong issuer, which would make the
            // issuer_key_hash (and so the SCT) wrong.
            let issuer_key = pkix::certificate_public_key(issuer_der)
                .map_err(|e| Rejection(format!("chain[1]: {e}")))?;
            if !pkix::certificate_signed_by(leaf_der, &issuer_key).unwrap_or(false) {
                return Err(Rejection("chain[0] is not signed by chain[1]".into()));
            }
        }
        let san = leaf.subject_alternative_name().ok().flatten();
        for name in san.iter().flat_map(|san| san.value.general_names.iter()) {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name
                && reject_names.iter().any(|r| r.eq_ignore_ascii_case(dns))
            {
                return Err(Rejection(format!("{dns} is refused by this log")));
            }
        }

        let timestamp = now_ms();
        let (sct, leaf_input) = match (kind, issuer_der) {
            (EntryKind::Precert, Some(issuer_der)) => {
                let tbs = ct::tbs_without_extension(leaf_der, ct::POISON_OID)?;
                let ikh = ct::issuer_key_hash(issuer_der)?;
                (
                    self.signer.sign_precert(timestamp, &ikh, &tbs, &[])?,
                    ct::precert_signed_data(timestamp, &ikh, &tbs, &[])?,
                )
            }
            _ => (
                self.signer.sign_x509(timestamp, leaf_der, &[])?,
                ct::x509_signed_data(timestamp, leaf_der, &[])?,
            ),
        };
        // The signed data and the MerkleTreeLeaf are the same bytes (see ct::precert_signed_data).
        lock(&self.leaves).push(ct::leaf_hash(&leaf_input));
        Ok(AddChainResponse::try_from(&sct)?)
    }
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, msg.into()).into_response()
}

/// Applies latency and the down switch shared by every CT endpoint; `Err` is the answer.
async fn gate(log: &FakeLog) -> Result<Knobs, Response> {
    let knobs = log.knobs();
    if knobs.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(knobs.latency_ms)).await;
    }
    if knobs.down {
        return Err(text(StatusCode::SERVICE_UNAVAILABLE, "log is down"));
    }
    Ok(knobs)
}

async fn submit(log: Arc<FakeLog>, body: Bytes, kind: EntryKind) -> Response {
    let c = &log.counters;
    let knobs = match gate(&log).await {
        Ok(knobs) => knobs,
        Err(resp) => {
            c.unavailable.fetch_add(1, Ordering::Relaxed);
            return resp;
        }
    };
    if knobs.error_rate > 0.0 && random_unit() < knobs.error_rate {
        c.injected_errors.fetch_add(1, Ordering::Relaxed);
        return text(StatusCode::INTERNAL_SERVER_ERROR, "injected error");
    }
    match log.accept(&body, kind, &knobs.reject_names) {
        Ok(resp) => {
            c.accepted.fetch_add(1, Ordering::Relaxed);
            if kind == EntryKind::X509 {
                c.accepted_x509.fetch_add(1, Ordering::Relaxed);
            }
            Json(resp).into_response()
        }
        Err(Rejection(msg)) => {
            c.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(?kind, %msg, "submission rejected");
            text(StatusCode::BAD_REQUEST, msg)
        }
    }
}

async fn add_chain(State(log): State<Arc<FakeLog>>, body: Bytes) -> Response {
    submit(log, body, EntryKind::X509).await
}

async fn add_pre_chain(State(log): State<Arc<FakeLog>>, body: Bytes) -> Response {
    submit(log, body, EntryKind::Precert).await
}

async fn get_sth(State(log): State<Arc<FakeLog>>) -> Response {
    if let Err(resp) = gate(&log).await {
        return resp;
    }
    match log.signed_tree_head() {
        Ok(sth) => Json(sth).into_response(),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn get_knobs(State(log): State<Arc<FakeLog>>) -> Json<Knobs> {
    Json(log.knobs())
}

async fn post_knobs(State(log): State<Arc<FakeLog>>, body: Bytes) -> Response {
    let update: KnobsUpdate = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match log.update_knobs(update) {
        Ok(knobs) => Json(knobs).into_response(),
        Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// Serves the log on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    log: Arc<FakeLog>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // No Nagle: a reply in two segments would otherwise wait for the
    // submitter's delayed ACK (~40 ms), a latency no real log adds.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, log.router())
        .with_graceful_shutdown(shutdown)
        .await
}

/// A log served in the background, for tests; dropping it stops the server.
pub struct RunningLog {
    pub addr: SocketAddr,
    pub log: Arc<FakeLog>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningLog {
    /// Binds 127.0.0.1 on a free port and serves `log` there.
    pub async fn start(log: Arc<FakeLog>) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, log.clone(), async {
            // A dropped sender stops the server too.
            let _ = stop.await;
        }));
        Ok(Self {
            addr,
            log,
            shutdown,
            task,
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:1234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits for it.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(());
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// The log's signing key from a PEM file, created (P-256, mode 0600) if the
/// file is missing, so a restarted log keeps its identity.
pub fn load_or_create_key(path: &std::path::Path) -> anyhow::Result<PKey<Private>> {
    use anyhow::Context;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        return PKey::private_key_from_pem(&pem)
            .with_context(|| format!("parsing {}", path.display()));
    }
    let key = FakeLogConfig::generate()?.key;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(&key.private_key_to_pem_pkcs8()?)?;
    Ok(key)
}
