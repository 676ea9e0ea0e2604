//! The `kiln` command line: the all-in-one CA's flags (`kiln` alone serves)
//! and the operator's subcommands, each carried out in [`crate::commands`].

use crate::commands;
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Kiln: an ACME CA whose finalization is asynchronous. Without a command
/// it runs the api and every pipeline stage in one process on SQLite, with
/// fake CT logs on loopback.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

impl Cli {
    /// Serves, or carries out the subcommand.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            None => commands::serve::serve(self.serve).await,
            Some(Command::Migrate {
                database_url,
                database_url_file,
            }) => commands::migrate::migrate(database_url, database_url_file).await,
            Some(Command::Init {
                dir,
                root_dir,
                api_names,
            }) => {
                let root_dir = root_dir.unwrap_or_else(|| dir.join("root-ca"));
                commands::init::init(&dir, &root_dir, &api_names)
            }
            Some(Command::Ca(CaCommand::Init {
                root_dir,
                signer_dir,
                cross_sign,
            })) => commands::ca::init(&root_dir, &signer_dir, cross_sign),
            Some(Command::Ca(CaCommand::IssueIntermediate {
                root_dir,
                signer_dir,
            })) => commands::ca::issue_intermediate(&root_dir, &signer_dir),
            Some(Command::Report(Report::Compat {
                db,
                json,
                abandon_after_secs,
            })) => commands::report::compat(&db, json, abandon_after_secs).await,
            Some(Command::Order(OrderCommand::Show { id, db })) => {
                commands::order::show(&db, &id).await
            }
            Some(Command::Ari(AriCommand::RenewNow {
                serials,
                explanation_url,
                db,
            })) => commands::ari::renew_now(&db, &serials, explanation_url.as_deref()).await,
            Some(Command::Revoke {
                serials,
                reason,
                db,
            }) => commands::revoke::revoke(&db, &serials, reason).await,
            Some(Command::BlockKey {
                public_key,
                sha256,
                comment,
                db,
            }) => {
                let key = match (public_key, sha256) {
                    (Some(path), _) => commands::block_key::KeyArg::Pem(path),
                    (None, Some(hex)) => commands::block_key::KeyArg::Sha256(hex),
                    (None, None) => anyhow::bail!("give --public-key or --sha256"),
                };
                commands::block_key::block_key(&db, key, &comment).await
            }
            Some(Command::Eab(EabCommand::Create { comment, db })) => {
                commands::eab::create(&db, &comment).await
            }
            Some(Command::Eab(EabCommand::List { db })) => commands::eab::list(&db).await,
            Some(Command::Eab(EabCommand::Revoke { key_id, db })) => {
                commands::eab::revoke(&db, &key_id).await
            }
            Some(Command::Audit(args)) => crate::audit::main(args).await,
            Some(Command::DeadLetters(command)) => commands::dead_letters::run(command).await,
            Some(Command::Conformance(args)) => commands::conformance::run(args).await,
        }
    }
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where the database, the CA keys and root.pem live.
    #[arg(long, env = "KILN_DATA_DIR", default_value = "./kiln-data")]
    pub(crate) data_dir: PathBuf,
    /// The HTTPS address of the ACME server.
    #[arg(long, env = "KILN_LISTEN", default_value = "127.0.0.1:14443")]
    pub(crate) listen: SocketAddr,
    /// The plain-HTTP address relying parties fetch the issuer certificate
    /// and the CRLs from (every leaf's AIA and CRL DP name it; BR 7.1.2.7.7
    /// allows only http:// there).
    #[arg(
        long,
        env = "KILN_PUBLIC_HTTP_LISTEN",
        default_value = "127.0.0.1:14080"
    )]
    pub(crate) public_http_listen: SocketAddr,
    /// The base URL written into every leaf's AIA and CRL URLs; default
    /// http://<public-http-listen>. Give a public name (behind a proxy to
    /// that listener) for leaves that lint clean.
    #[arg(long, env = "KILN_PUBLIC_BASE_URL")]
    pub(crate) public_base_url: Option<String>,
    /// A revocation is on the served CRL within this many seconds.
    #[arg(long, env = "KILN_CRL_PUBLISH_WITHIN", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(crate) crl_publish_within: u64,
    /// Reuse a valid authorization validated within this many seconds in
    /// the same account's new orders, as Let's Encrypt does; 0: every order
    /// validates afresh (Pebble's PEBBLE_AUTHZREUSE=0).
    #[arg(long, env = "KILN_AUTHZ_REUSE_SECS", default_value_t = 7 * 24 * 3600)]
    pub(crate) authz_reuse_secs: u64,
    /// CRL shards: each certificate is listed, if revoked, on the one its
    /// CRL DP names.
    #[arg(long, env = "KILN_CRL_SHARDS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) crl_shards: u32,
    /// Send every DNS lookup (A/AAAA, TXT, CAA) to this server. Without it
    /// every name resolves to 127.0.0.1 and has no CAA records.
    #[arg(long, env = "KILN_DNS_SERVER")]
    pub(crate) dns_server: Option<SocketAddr>,
    /// Port that http-01 validation connects to.
    #[arg(long, env = "KILN_HTTP01_PORT", default_value_t = 5002)]
    pub(crate) http01_port: u16,
    /// Port that tls-alpn-01 validation connects to.
    #[arg(long, env = "KILN_TLSALPN01_PORT", default_value_t = 5001)]
    pub(crate) tlsalpn01_port: u16,
    /// How long finalize waits for the pipeline: async (answer `processing`
    /// at once), sync (wait for it) or hybrid (wait about its recent p95).
    #[arg(long, env = "KILN_FINALIZE_MODE", default_value = "async")]
    pub(crate) finalize_mode: api::FinalizeMode,
    /// A brownout schedule (TOML) that switches the mode in UTC windows,
    /// with overrides by account and User-Agent; reloaded on SIGHUP.
    #[arg(long, env = "KILN_FINALIZE_SCHEDULE", conflicts_with = "finalize_mode")]
    pub(crate) finalize_schedule: Option<PathBuf>,
    /// Serve /metrics and the client-compatibility page (/compat) here.
    #[arg(long, env = "KILN_ADMIN_LISTEN")]
    pub(crate) admin_listen: Option<SocketAddr>,
    /// A finalized order not valid by then ends invalid (e.g. 10m, 30s).
    #[arg(long, env = "KILN_FINALIZE_TIMEOUT", default_value = "10m", value_parser = crate::knobs::parse_duration)]
    pub(crate) finalize_timeout: std::time::Duration,
    /// Use this CT log (`URL=PUBLIC_KEY`, the key as base64 DER, each log
    /// its own operator) instead of starting fake ones; repeatable, e.g.
    /// the `fake-ct-log` binary's `http://…` and `public_key=` lines.
    #[arg(long = "ct-log", env = "KILN_CT_LOGS", value_delimiter = ',', value_parser = parse_ct_log)]
    pub(crate) ct_logs: Vec<ct_submitter::CtLog>,
    /// Special-use domains whose names may be issued for (test, example,
    /// internal, alt, local, home.arpa), replacing the default; `none`
    /// allows none, as a public CA must.
    #[arg(
        long = "allow-special-use",
        env = "KILN_ALLOW_SPECIAL_USE",
        value_delimiter = ',',
        default_value = "test"
    )]
    pub(crate) allow_special_use: Vec<String>,
    /// Refuse a name (`rejectedIdentifier`): `NAME` exactly, `*.NAME`
    /// every name under it, `.NAME` it and every name under it. Repeatable.
    #[arg(
        long = "blocked-name",
        env = "KILN_BLOCKED_NAMES",
        value_delimiter = ','
    )]
    pub(crate) blocked_names: Vec<String>,
    /// More blocklist entries, one a line (`#` comments).
    #[arg(long, env = "KILN_BLOCKED_NAMES_FILE")]
    pub(crate) blocked_names_file: Option<PathBuf>,
    /// A newer public_suffix_list.dat instead of the built-in list.
    #[arg(long, env = "KILN_PUBLIC_SUFFIX_LIST")]
    pub(crate) public_suffix_list: Option<PathBuf>,
    /// A Debian weak-key list (CVE-2008-0166, e.g. openssl-blacklist's
    /// blacklist.RSA-2048); repeat for more. RSA keys on one are refused
    /// as account keys (badPublicKey) and in CSRs (badCSR).
    #[arg(long = "debian-weak-keys", value_name = "FILE")]
    pub(crate) debian_weak_keys: Vec<PathBuf>,
    /// Rate limits: a TOML file with the keys of the api's
    /// `[api.rate_limits]` at its top level (README "Rate limits"). None
    /// without it.
    #[arg(long, env = "KILN_RATE_LIMITS")]
    pub(crate) rate_limits: Option<PathBuf>,
    /// Terms of service URL, shown in the directory; newAccount must then
    /// send "termsOfServiceAgreed": true.
    #[arg(long, env = "KILN_TERMS_OF_SERVICE")]
    pub(crate) terms_of_service: Option<String>,
    /// Every new account needs an External Account Binding (RFC 8555
    /// §7.3.4) with a key from `kiln eab create`; the directory says so.
    #[arg(long, env = "KILN_EXTERNAL_ACCOUNT_REQUIRED")]
    pub(crate) external_account_required: bool,
    /// Offer an alternate chain (RFC 8555 §7.4.2) with every certificate:
    /// a second root, made in DATA_DIR/ca if absent, cross-signs the
    /// intermediate (test a client's --preferred-chain with it).
    #[arg(long, env = "KILN_ALTERNATE_CHAIN")]
    pub(crate) alternate_chain: bool,
    /// A remote validation perspective (MPIC, BR 3.2.2.9) resolving through
    /// its own DNS server: NAME[@REGION]=DNS_ADDR, repeatable. Every
    /// challenge that passes is repeated by each; the BRs' quorum decides.
    #[arg(long = "perspective", value_name = "NAME[@REGION]=DNS_ADDR")]
    pub(crate) perspectives: Vec<crate::perspectives::PerspectiveSpec>,
    /// Log and count failed corroborations without refusing (a staged
    /// rollout, as Let's Encrypt ran before enforcing).
    #[arg(long, env = "KILN_MPIC_OBSERVE_ONLY")]
    pub(crate) mpic_observe_only: bool,
    /// How long remote perspectives have to answer; one that has not
    /// counts as not corroborating.
    #[arg(long, env = "KILN_MPIC_DEADLINE", value_parser = crate::knobs::parse_duration)]
    pub(crate) mpic_deadline: Option<std::time::Duration>,
    /// Requests in flight at once; beyond it the api answers 503 with
    /// Retry-After.
    #[arg(long, env = "KILN_MAX_IN_FLIGHT_REQUESTS", default_value_t = api::request_limits::DEFAULT_MAX_IN_FLIGHT)]
    pub(crate) max_in_flight_requests: usize,
    /// The challenge types offered, comma-separated; by default http-01,
    /// dns-01, tls-alpn-01 and dns-account-01. Add dns-persist-01 to test it:
    /// its challenge has no token, which some clients (uacme) cannot parse.
    #[arg(long, env = "KILN_CHALLENGE_TYPES", value_delimiter = ',', value_parser = parse_challenge_type)]
    pub(crate) challenge_types: Vec<domain::ChallengeType>,
    #[command(flatten)]
    pub(crate) knobs: KnobArgs,
}

impl ServeArgs {
    /// `--rate-limits FILE`, read and checked (unknown keys refused).
    pub(crate) fn rate_limits(&self) -> anyhow::Result<api::rate_limits::RateLimits> {
        use anyhow::Context as _;
        let Some(path) = &self.rate_limits else {
            return Ok(Default::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the rate limits file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("rate limits file {}", path.display()))
    }

    /// `--allow-special-use`, with `none` for the empty list.
    pub(crate) fn allowed_special_use_domains(&self) -> Vec<String> {
        self.allow_special_use
            .iter()
            .filter(|d| !d.eq_ignore_ascii_case("none"))
            .cloned()
            .collect()
    }
}

/// Knobs for testing ACME clients (off unless given; never in production).
#[derive(Args, Debug)]
#[command(next_help_heading = "Client-testing knobs")]
pub struct KnobArgs {
    /// Keep finalized orders `processing`: `5s`, `uniform:1s..5s`, `exp:2s`
    /// (seeded), or `polls:3` (until the client has polled 3 times).
    #[arg(long, env = "KILN_FINALIZE_DELAY")]
    finalize_delay: Option<crate::knobs::FinalizeDelay>,
    /// Delay only orders naming a matching identifier (`*` wildcards).
    #[arg(long, env = "KILN_FINALIZE_DELAY_PATTERN")]
    finalize_delay_pattern: Option<String>,
    /// How `Retry-After` is written: seconds, http-date, random, absent, past.
    #[arg(long, env = "KILN_RETRY_AFTER_FORMAT")]
    retry_after_format: Option<crate::knobs::RetryAfterFormat>,
    /// The `Retry-After` seconds to announce (instead of the measured p90);
    /// less than the finalize delay catches clients that poll only once.
    #[arg(long, env = "KILN_RETRY_AFTER_SECONDS")]
    retry_after_seconds: Option<u64>,
    /// Make finalization fail at a stage (caa, precert, ct, final): the
    /// order ends `invalid` with that stage's problem; or `stall`: it stays
    /// `processing` until --finalize-timeout.
    #[arg(long, env = "KILN_FAIL_STAGE")]
    fail_stage: Option<crate::knobs::InjectedFailure>,
    /// HTTP faults, `ENDPOINT:KIND[:rate=R|:next=N]` with KIND bad-nonce,
    /// 429, 503, 500 or slow=DURATION; ENDPOINT e.g. new-order, finalize,
    /// order, or `*`. Repeatable.
    #[arg(long = "http-fault", env = "KILN_HTTP_FAULTS", value_delimiter = ',')]
    http_faults: Vec<crate::knobs::HttpFault>,
    /// Seed for every random knob, for reproducible runs.
    #[arg(long, env = "KILN_KNOB_SEED", default_value_t = 1)]
    knob_seed: u64,
    /// Serve the knobs' management API here (set, clear, reset, timelines).
    #[arg(long, env = "KILN_MGMT_LISTEN")]
    pub(crate) mgmt_listen: Option<SocketAddr>,
}

impl KnobArgs {
    pub(crate) fn knobs(&self) -> crate::knobs::Knobs {
        let defaults = crate::knobs::Knobs::default();
        crate::knobs::Knobs {
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
pub struct DatabaseArgs {
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
    pub(crate) async fn open(&self) -> anyhow::Result<store::Store> {
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
    /// ACME Renewal Information (RFC 9773).
    #[command(subcommand)]
    Ari(AriCommand),
    /// Revoke certificates as the CA (BR 4.9.1): any serial that was
    /// signed, a precertificate without its final certificate included.
    /// The signer lists them on their CRL shards at its next update.
    Revoke {
        /// Serials in hex, as in the certificate URL (upper case and
        /// colons accepted).
        #[arg(required = true)]
        serials: Vec<String>,
        /// An RFC 5280 reason the BRs allow, by name or code.
        #[arg(long, default_value = "unspecified", value_parser = commands::revoke::parse_reason)]
        reason: i64,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Block a compromised key (BR 6.1.1.3): refused from then on as an
    /// account key and in CSRs. By its public key (PEM: a key, or a
    /// certificate whose key it is) or by the hex SHA-256 of its DER
    /// SubjectPublicKeyInfo.
    BlockKey {
        #[arg(long, required_unless_present = "sha256", conflicts_with = "sha256")]
        public_key: Option<PathBuf>,
        #[arg(long)]
        sha256: Option<String>,
        /// Why, for the operators who read the blocklist later.
        #[arg(long, default_value = "blocked by an operator")]
        comment: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// External Account Binding keys (RFC 8555 §7.3.4): what a client
    /// needs for a new account when Kiln requires one.
    #[command(subcommand)]
    Eab(EabCommand),
    /// Check every stored order and certificate against what Kiln must
    /// have done (issue 16): exit 1 on any violation, 2 if it cannot run.
    Audit(crate::audit::AuditArgs),
    /// The jobs a distributed deployment's stages gave up on (RabbitMQ's
    /// `kiln.dead`), with why; replay chosen ones once the cause is fixed.
    #[command(subcommand)]
    DeadLetters(commands::dead_letters::DeadLettersCommand),
    /// Put an ACME client through every behaviour a real CA can show, each
    /// against a fresh all-in-one Kiln, and print its scorecard (issue 17).
    Conformance(commands::conformance::ConformanceArgs),
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
    /// The CA's offline ceremony: the only commands that use the root's
    /// key.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Create the CA if absent — the root in ROOT_DIR (default DIR/root-ca),
    /// the signer's files in DIR/ca (no root key there) — and write
    /// DIR/root.pem, DIR/chain.pem and an HTTPS certificate for the api
    /// (DIR/api-tls-chain.pem, DIR/api-tls-key.pem).
    Init {
        #[arg(long, env = "KILN_DATA_DIR", default_value = "./kiln-data")]
        dir: PathBuf,
        /// Where the root's certificate and key go: keep it off every host
        /// that runs a service.
        #[arg(long)]
        root_dir: Option<PathBuf>,
        /// Names and addresses the api's HTTPS certificate covers.
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1,::1")]
        api_names: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum EabCommand {
    /// A new key id and HMAC key, printed once: give both to one customer.
    Create {
        /// Whom the key is for, shown by `kiln eab list`.
        #[arg(long, default_value = "")]
        comment: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Every key: created, bound account, revoked (never the HMAC key).
    List {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Revoke a key: it binds no account from now on (one it bound stays).
    Revoke {
        /// The key id `kiln eab create` printed (base64url: it may begin
        /// with `-`).
        #[arg(allow_hyphen_values = true)]
        key_id: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(Subcommand, Debug)]
enum OrderCommand {
    /// An order's state and the timeline of its finalization.
    Show {
        /// The order's id (random base64url, so it may begin with `-`).
        #[arg(allow_hyphen_values = true)]
        id: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// A new root in ROOT_DIR, and its first intermediate in SIGNER_DIR
    /// (what `[signer] ca_dir` names: intermediate.pem, its key, root.pem).
    Init {
        #[arg(long)]
        root_dir: PathBuf,
        #[arg(long)]
        signer_dir: PathBuf,
        /// Also a second root (alternate-root.pem) that cross-signs the
        /// intermediate: the signer then offers an alternate chain.
        #[arg(long)]
        cross_sign: bool,
    },
    /// A new intermediate from the root in ROOT_DIR into SIGNER_DIR, which
    /// must not hold one yet.
    IssueIntermediate {
        #[arg(long)]
        root_dir: PathBuf,
        #[arg(long)]
        signer_dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum AriCommand {
    /// Ask for certificates to be renewed at once, as after an incident:
    /// their suggested renewal window moves to the past, so clients that
    /// poll renewalInfo renew now. Unknown serials make it fail.
    RenewNow {
        /// Serials in hex, as in the certificate URL (upper case and
        /// colons accepted).
        #[arg(required = true)]
        serials: Vec<String>,
        /// A page explaining why, shown to clients as `explanationURL`.
        #[arg(long)]
        explanation_url: Option<String>,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

/// `--ct-log URL=PUBLIC_KEY`: a log at URL with that base64 DER key, named
/// and operated by its URL.
fn parse_ct_log(text: &str) -> Result<ct_submitter::CtLog, String> {
    use base64::Engine as _;
    let (url, key) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected URL=PUBLIC_KEY"))?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("{url:?} is not an http(s) URL"));
    }
    let key = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .map_err(|e| format!("the public key of {url}: {e}"))?;
    pkix::public_key_from_spki(&key).map_err(|e| format!("the public key of {url}: {e}"))?;
    Ok(ct_submitter::CtLog::new(url, url, key, url))
}

#[cfg(test)]
mod tests;

/// One of the challenge types Kiln can validate, by its ACME name.
fn parse_challenge_type(name: &str) -> Result<domain::ChallengeType, String> {
    let all = domain::ChallengeType::ALL;
    all.into_iter().find(|t| t.as_str() == name).ok_or_else(|| {
        let names: Vec<_> = all.iter().map(|t| t.as_str()).collect();
        format!(
            "not a challenge type Kiln offers: {name:?} (one of {})",
            names.join(", ")
        )
    })
}
