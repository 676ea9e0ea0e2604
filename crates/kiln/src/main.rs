//! `kiln`: the whole CA in one process, for laptops and client authors.

use clap::Parser;
use kiln::{EmbeddedConfig, Kiln};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Kiln: an ACME CA whose finalization is asynchronous. This runs the api
/// and every pipeline stage in one process on SQLite, with fake CT logs.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,hyper=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let mut config = EmbeddedConfig::new(cli.data_dir);
    config.listen = cli.listen;
    config.dns_server = cli.dns_server;
    config.http01_port = cli.http01_port;
    config.tlsalpn01_port = cli.tlsalpn01_port;
    let kiln = Kiln::start(config).await?;
    println!("Kiln is running.");
    println!("  ACME directory: {}", kiln.directory_url);
    println!("  Root certificate: {}", kiln.root_pem_path.display());
    println!("Press Ctrl-C to stop.");
    wait_for_signal().await?;
    println!("Shutting down…");
    kiln.shutdown().await;
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
