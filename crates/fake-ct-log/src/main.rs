//! `fake-ct-log`: an RFC 6962 log front end for laptop mode and manual tests.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Parser;
use fake_ct_log::{FakeLog, FakeLogConfig};
use openssl::pkey::{PKey, Private};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(about = "A fake RFC 6962 Certificate Transparency log")]
struct Args {
    /// Address to listen on; port 0 picks a free one (printed at start).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// PEM private key (P-256); created if missing, so the log keeps its identity.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Delay added to every CT response.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Fraction (0..=1) of submissions answered with 500.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Answer 503 on every CT endpoint.
    #[arg(long)]
    down: bool,
    /// Refuse certificates with this DNS name (repeatable).
    #[arg(long = "reject-name")]
    reject_names: Vec<String>,
}

fn load_or_create_key(path: &Path) -> anyhow::Result<PKey<Private>> {
    if path.exists() {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        return PKey::private_key_from_pem(&pem)
            .with_context(|| format!("parsing {}", path.display()));
    }
    let key = FakeLogConfig::generate()?.key;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(&key.private_key_to_pem_pkcs8()?)?;
    Ok(key)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    let mut config = match &args.key {
        Some(path) => FakeLogConfig::new(load_or_create_key(path)?),
        None => FakeLogConfig::generate()?,
    };
    config.latency = Duration::from_millis(args.latency_ms);
    config.error_rate = args.error_rate;
    config.down = args.down;
    config.reject_names = args.reject_names;
    let log = Arc::new(FakeLog::new(config)?);

    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    // stdout carries only what a script needs: the URL first, then the key.
    println!("http://{addr}");
    println!("public_key={}", B64.encode(log.public_key_der()));
    println!("log_id={}", B64.encode(log.log_id()));
    std::io::stdout().flush()?;
    tracing::info!(%addr, "fake CT log listening");

    // SIGTERM (containers, process managers) and SIGINT (a terminal) both
    // stop it cleanly; the handler is installed before serving starts.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    fake_ct_log::serve(listener, log, async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    })
    .await?;
    Ok(())
}
