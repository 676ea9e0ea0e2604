//! `kiln`: the whole CA in one process, for laptops and client authors, and
//! the operator's commands for the distributed deployment.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kiln::{EmbeddedConfig, Kiln};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Kiln: an ACME CA whose finalization is asynchronous. Without a command
/// it runs the api and every pipeline stage in one process on SQLite, with
/// fake CT logs on loopback.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Where the database, the CA keys and root.pem live.
    #[arg(long, env = "KILN_DATA_DIR", default_value = "./kiln-data")]
    data_dir: PathBuf,
    /// The HTTPS address of the ACME server.
    #[arg(long, env = "KILN_LISTEN", default_value = "127.0.0.1:14443")]
    listen: SocketAddr,
    /// Send every DNS lookup (A/AAAA, TXT, CAA) to this server. Without it
    /// every name resolves to 127.0.0.1 and has no CAA records.
    #[arg(long, env = "KILN_DNS_SERVER")]
    dns_server: Option<SocketAddr>,
    /// Port that http-01 validation connects to.
    #[arg(long, env = "KILN_HTTP01_PORT", default_value_t = 5002)]
    http01_port: u16,
    /// Port that tls-alpn-01 validation connects to.
    #[arg(long, env = "KILN_TLSALPN01_PORT", default_value_t = 5001)]
    tlsalpn01_port: u16,
    /// How long finalize waits for the pipeline: async (answer `processing`
    /// at once), sync (wait for it) or hybrid (wait about its recent p95).
    #[arg(long, env = "KILN_FINALIZE_MODE", default_value = "async")]
    finalize_mode: api::FinalizeMode,
    /// A brownout schedule (TOML) that switches the mode in UTC windows,
    /// with overrides by account and User-Agent; reloaded on SIGHUP.
    #[arg(long, env = "KILN_FINALIZE_SCHEDULE", conflicts_with = "finalize_mode")]
    finalize_schedule: Option<PathBuf>,
    /// Serve /metrics and the client-compatibility page (/compat) here.
    #[arg(long, env = "KILN_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// A finalized order not valid by then ends invalid (e.g. 10m, 30s).
    #[arg(long, env = "KILN_FINALIZE_TIMEOUT", default_value = "10m", value_parser = kiln::knobs::parse_duration)]
    finalize_timeout: std::time::Duration,
    #[command(flatten)]
    knobs: KnobArgs,
}

/// Knobs for testing ACME clients (off unless given; never in production).
#[derive(Args, Debug)]
#[command(next_help_heading = "Client-testing knobs")]
struct KnobArgs {
    /// Keep finalized orders `processing`: `5s`, `uniform:1s..5s`, `exp:2s`
    /// (seeded), or `polls:3` (until the client has polled 3 times).
    #[arg(long, env = "KILN_FINALIZE_DELAY")]
    finalize_delay: Option<kiln::knobs::FinalizeDelay>,
    /// Delay only orders naming a matching identifier (`*` wildcards).
    #[arg(long, env = "KILN_FINALIZE_DELAY_PATTERN")]
    finalize_delay_pattern: Option<String>,
    /// How `Retry-After` is written: seconds, http-date, random, absent, past.
    #[arg(long, env = "KILN_RETRY_AFTER_FORMAT")]
    retry_after_format: Option<kiln::knobs::RetryAfterFormat>,
    /// The `Retry-After` seconds to announce (instead of the measured p90);
    /// less than the finalize delay catches clients that poll only once.
    #[arg(long, env = "KILN_RETRY_AFTER_SECONDS")]
    retry_after_seconds: Option<u64>,
    /// Make finalization fail at a stage (caa, precert, ct, final): the
    /// order ends `invalid` with that stage's problem; or `stall`: it stays
    /// `processing` until --finalize-timeout.
    #[arg(long, env = "KILN_FAIL_STAGE")]
    fail_stage: Option<kiln::knobs::InjectedFailure>,
    /// HTTP faults, `ENDPOINT:KIND[:rate=R|:next=N]` with KIND bad-nonce,
    /// 429, 503, 500 or slow=DURATION; ENDPOINT e.g. new-order, finalize,
    /// order, or `*`. Repeatable.
    #[arg(long = "http-fault", env = "KILN_HTTP_FAULTS", value_delimiter = ',')]
    http_faults: Vec<kiln::knobs::HttpFault>,
    /// Seed for every random knob, for reproducible runs.
    #[arg(long, env = "KILN_KNOB_SEED", default_value_t = 1)]
    knob_seed: u64,
    /// Serve the knobs' management API here (set, clear, reset, timelines).
    #[arg(long, env = "KILN_MGMT_LISTEN")]
    mgmt_listen: Option<SocketAddr>,
}

impl KnobArgs {
    fn knobs(&self) -> kiln::knobs::Knobs {
        let defaults = kiln::knobs::Knobs::default();
        kiln::knobs::Knobs {
            finalize_delay: self.finalize_delay.unwrap_or(defaults.finalize_delay),
            delay_pattern: self.finalize_delay_pattern.clone(),
            retry_after: self.retry_after_format.unwrap_or(defaults.retry_after),
            retry_after_seconds: self.retry_after_seconds,
            fail: self.fail_stage,
            http_faults: self.http_faults.clone(),
            seed: self.knob_seed,
        }
    }
}

/// Which database a reporting command reads.
#[derive(Args, Debug)]
struct DatabaseArgs {
    /// The embedded Kiln's data directory (its SQLite database).
    #[arg(
        long,
        env = "KILN_DATA_DIR",
        default_value = "./kiln-data",
        conflicts_with = "database_url"
    )]
    data_dir: PathBuf,
    /// A distributed deployment's database.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
}

impl DatabaseArgs {
    async fn open(&self) -> anyhow::Result<store::Store> {
        let url = match &self.database_url {
            Some(url) => url.clone(),
            None => {
                let path = self.data_dir.join("kiln.db");
                anyhow::ensure!(path.exists(), "no Kiln database at {}", path.display());
                format!("sqlite://{}", path.display())
            }
        };
        store::Store::connect(&url)
            .await
            .context("opening the database")
    }
}

#[derive(Subcommand, Debug)]
enum Report {
    /// Per client family: of the finalizes answered `processing`, how many
    /// clients polled, downloaded, or gave up.
    Compat {
        #[command(flatten)]
        db: DatabaseArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// No poll this long after finalize counts as abandoned.
        #[arg(long, default_value_t = 600)]
        abandon_after_secs: u64,
    },
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Reports for operators.
    #[command(subcommand)]
    Report(Report),
    /// Orders.
    #[command(subcommand)]
    Order(OrderCommand),
    /// Apply the database migrations (PostgreSQL or SQLite), then exit.
    Migrate {
        #[arg(
            long,
            env = "DATABASE_URL",
            required_unless_present = "database_url_file"
        )]
        database_url: Option<String>,
        /// Read the URL (it carries a password) from this file instead.
        #[arg(long, env = "DATABASE_URL_FILE", conflicts_with = "database_url")]
        database_url_file: Option<PathBuf>,
    },
    /// Create the CA (root + intermediate) in DIR/ca if absent, and write
    /// DIR/root.pem, DIR/chain.pem and an HTTPS certificate for the api
    /// (DIR/api-tls-chain.pem, DIR/api-tls-key.pem).
    Init {
        #[arg(long, env = "KILN_DATA_DIR", default_value = "./kiln-data")]
        dir: PathBuf,
        /// Names and addresses the api's HTTPS certificate covers.
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1,::1")]
        api_names: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum OrderCommand {
    /// An order's state and the timeline of its finalization.
    Show {
        id: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Logs (JSON when not on a terminal) and traces. Spans are exported only
    // when OTEL_EXPORTER_OTLP_ENDPOINT (or …_TRACES_ENDPOINT) is set; the
    // other OTEL_* variables apply too. The guard flushes them on return.
    let _telemetry = service::telemetry::init("kiln", &service::config::Telemetry::default());
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Migrate {
            database_url,
            database_url_file,
        }) => {
            let database_url = match (database_url, database_url_file) {
                (Some(url), _) => url,
                (None, Some(path)) => std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?
                    .trim()
                    .to_string(),
                (None, None) => anyhow::bail!("--database-url or --database-url-file is required"),
            };
            let store = store::Store::connect(&database_url)
                .await
                .context("connecting")?;
            store.migrate().await.context("migrating")?;
            println!("migrations applied");
            Ok(())
        }
        Some(Command::Init { dir, api_names }) => init(&dir, &api_names),
        Some(Command::Report(Report::Compat {
            db,
            json,
            abandon_after_secs,
        })) => {
            let store = db.open().await?;
            let observations = store.finalize_observations(0).await?;
            let rows = api::compat::report(
                &observations,
                store::now_ms(),
                abandon_after_secs as i64 * 1000,
            );
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", api::compat::render_table(&rows));
            }
            Ok(())
        }
        Some(Command::Order(OrderCommand::Show { id, db })) => {
            let store = db.open().await?;
            let order = store
                .order(&id)
                .await?
                .with_context(|| format!("no order {id}"))?;
            print!(
                "{}",
                kiln::order_report(&order, &store.certificates_for_order(&id).await?)
            );
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = EmbeddedConfig::new(args.data_dir);
    config.listen = args.listen;
    config.dns_server = args.dns_server;
    config.http01_port = args.http01_port;
    config.tlsalpn01_port = args.tlsalpn01_port;
    config.admin_listen = args.admin_listen;
    config.finalize_timeout = args.finalize_timeout;
    let knobs = args.knobs.knobs();
    let knob_lines = knobs.describe();
    if knobs.active() || args.knobs.mgmt_listen.is_some() {
        config.knobs = Some(knobs);
        config.mgmt_listen = args.knobs.mgmt_listen;
    }
    let policy = match &args.finalize_schedule {
        Some(path) => api::FinalizePolicy::from_file(path).map_err(anyhow::Error::msg)?,
        None => api::FinalizePolicy::fixed(args.finalize_mode),
    };
    config.finalize = api::PolicyHandle::new(policy);
    if let Some(path) = &args.finalize_schedule {
        api::finalize_policy::reload_on_sighup(path.clone(), config.finalize.clone());
    }
    let mode = match &args.finalize_schedule {
        Some(path) => format!("schedule {}", path.display()),
        None => args.finalize_mode.as_str().to_string(),
    };
    if args.admin_listen.is_some() {
        // Before the stages start, so the series they create at zero
        // (retries, dead letters) are recorded too.
        service::admin::install_metrics();
    }
    let kiln = Kiln::start(config).await?;
    println!("Kiln is running.");
    println!("  ACME directory: {}", kiln.directory_url);
    println!("  Root certificate: {}", kiln.root_pem_path.display());
    println!("  Finalize mode: {mode}");
    if let Some(admin) = args.admin_listen {
        println!("  Metrics: http://{admin}/metrics   Client compatibility: http://{admin}/compat");
    }
    if !knob_lines.is_empty() || args.knobs.mgmt_listen.is_some() {
        println!("  Client-testing knobs (not for production):");
        for line in &knob_lines {
            println!("    {line}");
        }
        if let Some(mgmt) = args.knobs.mgmt_listen {
            println!("    management API: http://{mgmt}/knobs");
        }
    }
    println!("Press Ctrl-C to stop.");
    wait_for_signal().await?;
    println!("Shutting down…");
    kiln.shutdown().await;
    Ok(())
}

fn init(dir: &std::path::Path, api_names: &[String]) -> anyhow::Result<()> {
    let ca = signer::ca::CaHierarchy::load_or_create(&dir.join("ca"))?;
    std::fs::write(dir.join("root.pem"), ca.root.cert.to_pem()?)?;
    std::fs::write(dir.join("chain.pem"), ca.chain_pem())?;
    let (ips, names): (Vec<&String>, Vec<&String>) =
        api_names.iter().partition(|n| n.parse::<IpAddr>().is_ok());
    let ips: Vec<IpAddr> = ips.iter().filter_map(|n| n.parse().ok()).collect();
    let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
    let (cert, key) = ca.tls_server_certificate(&names, &ips)?;
    let mut chain = cert.to_pem()?;
    chain.extend_from_slice(ca.chain_pem().as_bytes());
    std::fs::write(dir.join("api-tls-chain.pem"), chain)?;
    kiln::write_private(
        &dir.join("api-tls-key.pem"),
        &key.private_key_to_pem_pkcs8()?,
    )?;
    println!("CA ready in {}", dir.join("ca").display());
    println!("  root: {}", dir.join("root.pem").display());
    Ok(())
}

async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}
