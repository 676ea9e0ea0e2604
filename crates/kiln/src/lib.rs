//! The all-in-one Kiln: the api and every pipeline stage in one process, on
//! SQLite and the in-process queue, with fake CT logs on loopback. The same
//! stage code runs here as in the distributed binaries; only the back ends
//! differ.

#![forbid(unsafe_code)]

mod audit;
pub mod cli;
mod commands;
mod conformance;
mod data_dir;
pub mod knobs;
mod mgmt;
mod order_report;
pub mod perspectives;

pub use data_dir::write_private;
use data_dir::{lock_data_dir, private_database_file};
pub use order_report::order_report;

use anyhow::Context;
use api::ApiConfig;
use caa_checker::CaaChecker;
use ct_submitter::{CtLog, CtSubmitter, SubmitPolicy};
use dns::caa::CaaPolicy;
use dns::{Dns, DnsMode};
use fake_ct_log::{FakeLog, FakeLogConfig};
use openssl::pkey::PKey;
use openssl::ssl::{SslAcceptor, SslMethod};
use queue::{Handler, MemoryQueue, Queue, RunnerConfig, StageIo, run_stage};
use signer::Signer;
use signer::ca::CaHierarchy;
use signer::certificate::Profile;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use validator::Validator;
use validator::address::AddressPolicy;
use validator::challenge::ChallengePorts;

/// Settings of the all-in-one binary; `kiln --help` documents each flag.
#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Every lookup goes here; `None`: every name is 127.0.0.1 without CAA.
    pub dns_server: Option<SocketAddr>,
    pub http01_port: u16,
    pub tlsalpn01_port: u16,
    /// Fake CT logs started on loopback, each its own operator.
    pub fake_ct_logs: usize,
    /// CT logs running elsewhere (e.g. `fake-ct-log` processes, so that a
    /// benchmark counts their CPU apart from Kiln's), used besides the fakes.
    pub external_ct_logs: Vec<CtLog>,
    /// Authorizations validated longer ago are rechecked for CAA at finalize.
    pub caa_recheck_after: Duration,
    /// A finalized order not `valid` by then ends `invalid`.
    pub finalize_timeout: Duration,
    /// A pipeline step not done by then is re-driven by the sweeper.
    pub step_timeout: Duration,
    /// How many SCTs from how many operators, and how patiently.
    pub ct_policy: SubmitPolicy,
    /// Base of the AIA caIssuers and CRL URLs written into certificates
    /// (`{base}/ca/intermediate.der`, `{base}/crl/{issuer}/{shard}.crl`), always plain http as
    /// the Baseline Requirements demand; `None`: the listener's address.
    pub certificate_base_url: Option<String>,
    /// How revocations are published: shards, and how soon a revocation is
    /// on the served CRL (`--crl-publish-within`, default 60 s).
    pub crl: signer::crls::CrlConfig,
    /// Where the plain-HTTP listener for relying parties binds (the issuer
    /// certificate of every leaf's AIA and the CRLs, `api::public_http`); `None`: none,
    /// and leaves name `http://` on the ACME listener's authority. The
    /// `kiln` command line binds 127.0.0.1:14080 unless told otherwise.
    pub public_http_listen: Option<SocketAddr>,
    /// How long finalize waits for the pipeline (mode, brownout schedule).
    pub finalize: api::PolicyHandle,
    /// Admin endpoints (metrics, the client-compatibility page), if wanted.
    pub admin_listen: Option<SocketAddr>,
    /// Client-testing knobs (`None`: a plain Kiln, nothing injected).
    pub knobs: Option<knobs::Knobs>,
    /// The management API for the knobs.
    pub mgmt_listen: Option<SocketAddr>,
    /// Special-use domains (RFC 6761 …) whose names may be issued for;
    /// `test` by default, since clients are tested with `*.test` names.
    pub allowed_special_use_domains: Vec<String>,
    /// The operator's name blocklist (`name`, `*.name`, `.name`; see
    /// `domain::identifier_policy`), and a file of more entries.
    pub blocked_names: Vec<String>,
    pub blocked_names_file: Option<PathBuf>,
    /// A newer `public_suffix_list.dat` instead of the built-in list.
    pub public_suffix_list: Option<PathBuf>,
    /// Debian weak-key lists (CVE-2008-0166) whose RSA keys are refused
    /// (`--debian-weak-keys`); none by default.
    pub debian_weak_key_files: Vec<PathBuf>,
    /// Rate limits (`api::rate_limits`); none unless asked
    /// (`--rate-limits FILE`).
    pub rate_limits: api::rate_limits::RateLimits,
    /// Terms of service newAccount must agree to (`--terms-of-service`).
    pub terms_of_service: Option<String>,
    /// Every new account needs an External Account Binding
    /// (`--external-account-required`; keys from `kiln eab create`).
    pub external_account_required: bool,
    /// Offer an alternate chain with every certificate: the intermediate
    /// cross-signed by a second root, made in `data_dir/ca` if absent
    /// (`--alternate-chain`).
    pub alternate_chain: bool,
    /// Remote perspectives and their quorum (`--perspective`).
    pub mpic: perspectives::MpicSettings,
    /// Requests in flight at once before the api answers 503.
    pub max_in_flight_requests: usize,
    /// A valid authorization validated within this is reused in the same
    /// account's new orders (`--authz-reuse-secs`; zero: never).
    pub authz_reuse: Duration,
    /// Offered challenge types (`--challenge-types`); dns-persist-01 only on
    /// request: its challenge has no token, and uacme 1.7 then fails every order.
    pub challenge_types: Vec<domain::ChallengeType>,
}

impl EmbeddedConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EmbeddedConfig {
            data_dir: data_dir.into(),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 14443)),
            dns_server: None,
            http01_port: 5002,
            tlsalpn01_port: 5001,
            fake_ct_logs: 3,
            external_ct_logs: Vec::new(),
            caa_recheck_after: Duration::from_secs(7 * 3600),
            finalize_timeout: Duration::from_secs(600),
            step_timeout: Duration::from_secs(30),
            ct_policy: SubmitPolicy::laptop(Duration::from_secs(600)),
            certificate_base_url: None,
            // A laptop CA issues few certificates: four shards show
            // sharding without many empty CRLs.
            crl: signer::crls::CrlConfig {
                shards: 4,
                ..signer::crls::CrlConfig::default()
            },
            public_http_listen: None,
            finalize: api::PolicyHandle::new(api::FinalizePolicy::fixed(api::FinalizeMode::Async)),
            admin_listen: None,
            knobs: None,
            mgmt_listen: None,
            allowed_special_use_domains: vec!["test".into()],
            blocked_names: Vec::new(),
            blocked_names_file: None,
            public_suffix_list: None,
            debian_weak_key_files: Vec::new(),
            rate_limits: api::rate_limits::RateLimits::default(),
            terms_of_service: None,
            external_account_required: false,
            alternate_chain: false,
            mpic: Default::default(),
            max_in_flight_requests: api::request_limits::DEFAULT_MAX_IN_FLIGHT,
            authz_reuse: Duration::from_secs(7 * 24 * 3600),
            challenge_types: api::DEFAULT_CHALLENGE_TYPES.to_vec(),
        }
    }
}

/// A CT log Kiln submits to, with the fake that serves it.
pub struct RunningLog {
    pub log: CtLog,
    pub fake: Arc<FakeLog>,
}

/// A running embedded Kiln. Drop does not stop it: call `shutdown`.
pub struct Kiln {
    pub directory_url: String,
    pub base_url: String,
    pub root_pem_path: PathBuf,
    pub root_pem: String,
    pub ct_logs: Vec<RunningLog>,
    pub store: Store,
    /// The base URL every leaf's AIA and CRL URLs are under.
    pub public_base_url: String,
    /// Where the plain-HTTP listener is bound, if there is one (behind
    /// `public_base_url` when the operator names another).
    pub public_http_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    /// Held while running: this process is the only one serving the data
    /// directory, which the api's sole-replica mode relies on.
    _data_dir_lock: std::fs::File,
}

impl Kiln {
    pub async fn start(config: EmbeddedConfig) -> anyhow::Result<Kiln> {
        // First, so that a bad setting stops Kiln before it does anything.
        let identifiers = api::config::identifier_policy(&api::config::IdentifierSettings {
            allowed_special_use_domains: &config.allowed_special_use_domains,
            blocked_names: &config.blocked_names,
            blocked_names_file: config.blocked_names_file.as_deref(),
            public_suffix_list: config.public_suffix_list.as_deref(),
            // A laptop CA: a client author gets a certificate for 127.0.0.1.
            loopback_ip_identifiers: true,
        })?;
        let debian_weak_keys = api::config::debian_weak_keys(&config.debian_weak_key_files)?;
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let data_dir_lock = lock_data_dir(dir)?;
        private_database_file(&dir.join("kiln.db"))?;
        let db_url = format!("sqlite://{}", dir.join("kiln.db").display());
        let store = Store::connect(&db_url)
            .await
            .context("opening the database")?;
        store.migrate().await.context("migrating the database")?;

        let ca_dir = dir.join("ca");
        let mut ca = CaHierarchy::load_or_create(&ca_dir).context("loading the CA")?;
        if config.alternate_chain {
            ca = ca
                .with_alternate_chain(&ca_dir)
                .context("loading the alternate chain")?;
        }
        let root_pem = String::from_utf8(ca.root.cert.to_pem()?)?;
        let root_pem_path = dir.join("root.pem");
        std::fs::write(&root_pem_path, &root_pem)?;

        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();

        // Bind first: with port 0 (tests) the URL needs the real port.
        let listener = std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("listening on {}", config.listen))?;
        let bound = listener.local_addr()?;
        let host = match bound.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        let base_url = format!("https://{host}:{}", bound.port());
        let public_http = match config.public_http_listen {
            Some(addr) => Some(
                std::net::TcpListener::bind(addr)
                    .with_context(|| format!("listening for plain HTTP on {addr}"))?,
            ),
            None => None,
        };
        // The base of every leaf's AIA and CRL URLs: the operator's, else
        // the plain-HTTP listener, else the ACME authority over http://.
        let public_http_addr = public_http.as_ref().map(|l| l.local_addr()).transpose()?;
        let public_base_url = match (&config.certificate_base_url, &public_http) {
            (Some(url), _) => url.trim_end_matches('/').to_string(),
            (None, Some(listener)) => format!("http://{}", listener.local_addr()?),
            (None, None) => base_url.replacen("https://", "http://", 1),
        };

        let ct_logs = start_fake_logs(dir, config.fake_ct_logs, &shutdown, &mut tasks).await?;
        let dns = Dns::new(match config.dns_server {
            Some(addr) => DnsMode::Server(addr),
            None => DnsMode::Loopback,
        })?;
        let caa_identities = vec!["kiln.test".to_string()];
        let caa_policy = CaaPolicy {
            issuer_domains: caa_identities.clone(),
        };
        let account_url_prefix = format!("{base_url}/acme/acct/");
        let queue = MemoryQueue::new();
        let io = service::stage_io(Arc::new(queue.clone()), &store);
        // Client-testing knobs are wired in only when asked for.
        let seams = config
            .knobs
            .clone()
            .or(config.mgmt_listen.map(|_| knobs::Knobs::default()))
            .map(|k| Seams {
                knobs: knobs::KnobState::new(k),
                store: store.clone(),
                queue: queue.clone(),
            });

        let validator = Validator {
            store: store.clone(),
            dns: dns.clone(),
            ports: ChallengePorts {
                http01: config.http01_port,
                tlsalpn01: config.tlsalpn01_port,
            },
            // A laptop CA: the challenge servers it validates run on this
            // machine. Every other non-public address stays refused.
            addresses: AddressPolicy::public_and_loopback(),
            caa_policy: caa_policy.clone(),
            account_url_prefix: account_url_prefix.clone(),
            corroboration: config.mpic.corroboration(&io.queue),
            perspective: None,
        };
        for (queue_name, remote) in config.mpic.remote_validators(&validator)? {
            let runner = RunnerConfig::default();
            spawn_stage(
                &mut tasks, &io, queue_name, remote, runner, &seams, &shutdown,
            );
        }
        tracing::warn!(
            "validation may connect to loopback (127.0.0.0/8, ::1) as well as public addresses: \
             this all-in-one CA is for testing clients, not for the internet"
        );
        spawn_stage(
            &mut tasks,
            &io,
            proto::queues::VALIDATOR,
            validator,
            RunnerConfig::default(),
            &seams,
            &shutdown,
        );
        let caa = CaaChecker {
            store: store.clone(),
            dns,
            policy: caa_policy,
            recheck_after: config.caa_recheck_after,
            step_timeout: config.step_timeout,
            account_url_prefix,
            corroboration: config.mpic.corroboration(&io.queue),
        };
        spawn_stage(
            &mut tasks,
            &io,
            proto::queues::CAA_CHECKER,
            caa,
            RunnerConfig::default(),
            &seams,
            &shutdown,
        );
        let signer = Signer {
            store: store.clone(),
            ca: ca.issuing(),
            profile: Profile::for_base_url(&public_base_url),
            serial_prefix: 0x01,
            crl: config.crl.clone(),
            step_timeout: config.step_timeout,
        };
        signer.record_issuer().await?;
        tasks.spawn(signer::crls::CrlUpdater::of(&signer).run(shutdown.clone()));
        spawn_stage(
            &mut tasks,
            &io,
            proto::queues::SIGNER,
            signer,
            RunnerConfig::default(),
            &seams,
            &shutdown,
        );
        let submitter = CtSubmitter {
            store: store.clone(),
            client: reqwest::Client::builder().build()?,
            logs: ct_logs
                .iter()
                .map(|l| l.log.clone())
                .chain(config.external_ct_logs.iter().cloned())
                .collect(),
            policy: config.ct_policy.clone(),
            step_timeout: config.step_timeout,
        };
        spawn_stage(
            &mut tasks,
            &io,
            proto::queues::CT_SUBMITTER,
            submitter,
            // Retries until each order's finalize deadline, not a fixed count.
            ct_submitter::runner_config(RunnerConfig {
                concurrency: ct_submitter::CONCURRENCY,
                ..RunnerConfig::default()
            }),
            &seams,
            &shutdown,
        );

        // The in-process queue starts empty: re-drive whatever a previous
        // run left in flight, then keep sweeping.
        let sweeper = sweeper::Sweeper {
            store: store.clone(),
            queue: io.queue.clone(),
            step_timeout: config.step_timeout,
        };
        sweeper.sweep(i64::MAX).await?;
        tasks.spawn(sweeper.run(Duration::from_secs(1), shutdown.clone()));

        let mut api_config = ApiConfig::new(&base_url);
        api_config.caa_identities = caa_identities;
        api_config.challenge_types = config.challenge_types.clone();
        api_config.step_timeout = config.step_timeout;
        api_config.finalize_timeout = config.finalize_timeout;
        api_config.authz_reuse = config.authz_reuse;
        api_config.root_pem = Some(root_pem.clone());
        api_config.finalize = config.finalize.clone();
        api_config.identifiers = Arc::new(identifiers);
        api_config.debian_weak_keys = Arc::new(debian_weak_keys);
        api_config.rate_limits = config.rate_limits.clone();
        api_config.terms_of_service = config.terms_of_service.clone();
        api_config.external_account_required = config.external_account_required;
        api_config.max_in_flight_requests = config.max_in_flight_requests.max(1);
        // The data directory is locked to this process (see `lock_data_dir`).
        api_config.sole_replica = true;
        if let Some(listen) = config.admin_listen {
            let compat = api::compat::admin_router(
                store.clone(),
                config.finalize.clone(),
                api_config.compat_abandon_after,
            );
            let (metrics, stop) = (service::admin::install_metrics(), shutdown.clone());
            let admin_listener = tokio::net::TcpListener::bind(listen).await?;
            tasks.spawn(async move {
                if let Err(e) =
                    service::admin::serve_on(admin_listener, Vec::new(), metrics, compat, stop)
                        .await
                {
                    tracing::error!(error = %e, "admin endpoints failed");
                }
            });
        }
        let api_queue: Arc<dyn Queue> = match &seams {
            Some(seams) => {
                api_config.client_test_hooks = Some(seams.knobs.clone());
                if let Some(listen) = config.mgmt_listen {
                    let app = mgmt::router(seams.knobs.clone(), store.clone());
                    let listener = tokio::net::TcpListener::bind(listen).await?;
                    let stop = shutdown.clone();
                    tasks.spawn(async move {
                        let stopped = async move { stop.cancelled().await };
                        if let Err(e) = axum::serve(listener, app)
                            .with_graceful_shutdown(stopped)
                            .await
                        {
                            tracing::error!(error = %e, "management API failed");
                        }
                    });
                }
                Arc::new(knobs::DelayingQueue {
                    inner: queue.clone(),
                    knobs: seams.knobs.clone(),
                    store: store.clone(),
                })
            }
            None => io.queue.clone(),
        };
        if let Some(listener) = public_http {
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            tasks.spawn(api::public_http::serve(
                listener,
                store.clone(),
                shutdown.clone(),
            ));
        }
        let router = api::router(store.clone(), api_queue, api_config).await?;
        let tls = tls_acceptor(&ca)?;
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp(listener)?
            .acceptor(api::listener::https_acceptor(
                axum_server::tls_openssl::OpenSSLConfig::from_acceptor(Arc::new(tls)),
            ))
            .handle(handle.clone());
        tasks.spawn(async move {
            if let Err(e) = server
                .serve(router.into_make_service_with_connect_info::<SocketAddr>())
                .await
            {
                tracing::error!(error = %e, "HTTPS server failed");
            }
        });
        let stop = shutdown.clone();
        tasks.spawn(async move {
            stop.cancelled().await;
            handle.graceful_shutdown(Some(Duration::from_secs(5)));
        });

        Ok(Kiln {
            directory_url: format!("{base_url}/directory"),
            base_url,
            root_pem_path,
            root_pem,
            ct_logs,
            store,
            public_base_url,
            public_http_addr,
            shutdown,
            tasks,
            _data_dir_lock: data_dir_lock,
        })
    }

    /// Stops accepting, finishes in-flight jobs, and returns.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.store.close().await;
    }
}

/// What the client-testing knobs need to reach into the pipeline.
struct Seams {
    knobs: Arc<knobs::KnobState>,
    store: Store,
    queue: MemoryQueue,
}

fn spawn_stage<H: Handler>(
    tasks: &mut JoinSet<()>,
    io: &StageIo,
    name: &'static str,
    handler: H,
    runner: RunnerConfig,
    seams: &Option<Seams>,
    shutdown: &CancellationToken,
) {
    let (io, shutdown) = (io.clone(), shutdown.clone());
    let faulty = seams
        .as_ref()
        .map(|s| (s.knobs.clone(), s.store.clone(), s.queue.clone()));
    tasks.spawn(async move {
        let ran = match faulty {
            Some((knobs, store, memory)) => {
                let handler = knobs::Faulty {
                    inner: handler,
                    knobs,
                    store,
                    queue: memory,
                };
                run_stage(io, name, Arc::new(handler), runner, shutdown).await
            }
            None => run_stage(io, name, Arc::new(handler), runner, shutdown).await,
        };
        if let Err(e) = ran {
            tracing::error!(stage = name, error = %e, "stage stopped");
        }
    });
}

/// Fake CT logs on loopback, one operator each; keys persist in the data
/// directory so SCTs stay verifiable across restarts.
async fn start_fake_logs(
    dir: &Path,
    count: usize,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<Vec<RunningLog>> {
    let key_dir = dir.join("ct-logs");
    std::fs::create_dir_all(&key_dir)?;
    let mut logs = Vec::new();
    for i in 0..count {
        let key_path = key_dir.join(format!("log-{i}.key.pem"));
        let key = match std::fs::read(&key_path) {
            Ok(pem) => PKey::private_key_from_pem(&pem)?,
            Err(_) => {
                let key = FakeLogConfig::generate()?.key;
                write_private(&key_path, &key.private_key_to_pem_pkcs8()?)?;
                key
            }
        };
        let fake = Arc::new(FakeLog::new(FakeLogConfig::new(key))?);
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let stop = shutdown.clone();
        let served = fake.clone();
        tasks.spawn(async move {
            let stopped = async move { stop.cancelled().await };
            if let Err(e) = fake_ct_log::serve(listener, served, stopped).await {
                tracing::error!(error = %e, "fake CT log stopped");
            }
        });
        logs.push(RunningLog {
            log: CtLog::new(
                format!("kiln-fake-log-{i}"),
                url,
                fake.public_key_der().to_vec(),
                format!("Fake Operator {i}"),
            ),
            fake,
        });
    }
    Ok(logs)
}

/// TLS for the ACME listener: a localhost certificate from Kiln's own CA,
/// sent with the intermediate so clients trusting `root.pem` can verify it.
fn tls_acceptor(ca: &CaHierarchy) -> anyhow::Result<SslAcceptor> {
    let (cert, key) = ca.tls_server_certificate(
        &["localhost"],
        &[
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ],
    )?;
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    builder.set_certificate(&cert)?;
    builder.set_private_key(&key)?;
    builder.add_extra_chain_cert(ca.intermediate.cert.clone())?;
    builder.check_private_key()?;
    builder.set_alpn_select_callback(|_, client| {
        openssl::ssl::select_next_proto(b"\x02h2\x08http/1.1", client)
            .ok_or(openssl::ssl::AlpnError::NOACK)
    });
    Ok(builder.build())
}
