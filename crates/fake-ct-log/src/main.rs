//! `fake-ct-log`: an RFC 6962 log front end for laptop mode and manual tests.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Parser;
use fake_ct_log::FakeLog;
use fake_ct_log::cli::Args;
use tracing_subscriber::EnvFilter;

// One thread: a fake log's work per submission is a few hundred
// microseconds, and on a benchmark machine its CPU is taken from the CA
// under test; a multi-threaded runtime spent a good part of it waking
// threads (finish_task_switch was the top symbol of its profile).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let log = Arc::new(FakeLog::new(args.config()?)?);

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
