//! The command line: what to drive, how hard, and how to report it; and
//! the checks that keep the tool on loopback.

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug, Clone)]
#[command(
    version,
    about = "ACME load generator: N complete issuances at concurrency C"
)]
pub struct Args {
    /// ACME directory URL (loopback only).
    #[arg(long)]
    pub directory: String,
    /// PEM root(s) to trust for the CA's HTTPS API (Kiln: DATA_DIR/root.pem).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Complete issuances to drive (bounded: at most 100000).
    #[arg(long, short = 'n', default_value_t = 200)]
    pub orders: usize,
    /// Issuances in flight at once.
    #[arg(long, short = 'c', default_value_t = 16)]
    pub concurrency: usize,
    /// ACME accounts, created before the clock starts (default: = concurrency).
    #[arg(long)]
    pub accounts: Option<usize>,
    /// Issuances run before the clock starts (warms connections and caches).
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    /// DNS names per order.
    #[arg(long, default_value_t = 1)]
    pub names_per_order: usize,
    /// Names are `<run>-<i>-<j>.<domain>`.
    #[arg(long, default_value = "kiln-bench.test")]
    pub domain: String,
    #[arg(long, value_enum, default_value_t = Challenge::Http01)]
    pub challenge: Challenge,
    /// Where the http-01 responder listens: the address the CA validates on.
    #[arg(long, default_value = "127.0.0.1:5002")]
    pub http01_listen: SocketAddr,
    /// dns-01: pebble-challtestsrv's management API, e.g. http://127.0.0.1:8055.
    #[arg(long)]
    pub challtestsrv: Option<String>,
    /// Poll every MS milliseconds, ignoring Retry-After. Without it the
    /// driver honours Retry-After and polls every --default-poll-ms when a
    /// response has none.
    #[arg(long)]
    pub poll_interval: Option<u64>,
    /// Poll interval when honouring Retry-After and a response carries none.
    #[arg(long, default_value_t = 50)]
    pub default_poll_ms: u64,
    /// One order gives up (counted as an error) after this long.
    #[arg(long, default_value_t = 120)]
    pub order_timeout_s: u64,
    /// The whole run stops after this long, whatever is left.
    #[arg(long, default_value_t = 1800)]
    pub run_timeout_s: u64,
    /// Tokio worker threads of the driver.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// A label copied into the report (e.g. "kiln-embedded round 3").
    #[arg(long, default_value = "")]
    pub label: String,
    /// Print the report as JSON on stdout (the text summary goes to stderr).
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    #[value(name = "http-01")]
    Http01,
    #[value(name = "dns-01")]
    Dns01,
}

impl Challenge {
    /// The name the report gives it (as on the command line).
    pub fn name(self) -> &'static str {
        match self {
            Challenge::Http01 => "http-01",
            Challenge::Dns01 => "dns-01",
        }
    }
}

impl Args {
    /// Refuses bounds out of range, a target off loopback, and dns-01
    /// without a challenge server.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.orders > 100_000 || self.concurrency == 0 || self.concurrency > 4096 {
            bail!("--orders must be ≤ 100000 and --concurrency in 1..=4096");
        }
        require_loopback(&self.directory).context("--directory")?;
        if let Some(url) = &self.challtestsrv {
            require_loopback(url).context("--challtestsrv")?;
        }
        if !self.http01_listen.ip().is_loopback() {
            bail!("--http01-listen must be a loopback address");
        }
        if self.challenge == Challenge::Dns01 && self.challtestsrv.is_none() {
            bail!("dns-01 needs --challtestsrv");
        }
        Ok(())
    }
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
