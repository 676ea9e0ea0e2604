//! What every Kiln binary shares, so each `main.rs` is a few lines of
//! wiring: config → telemetry → store → queue → run.

#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod telemetry;
mod worker;

pub use config::{Common, ConfigError};
pub use worker::{CLOSE_TIMEOUT, Wiring, run_worker};

use clap::Parser;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// The flags every stage binary takes.
#[derive(Parser, Debug)]
pub struct Cli {
    /// The binary's TOML config file; `KILN_<SECTION>__<KEY>` variables
    /// override it.
    #[arg(long, env = "KILN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Load and validate the config, then exit: 0 if it is good, 2 naming
    /// the bad key if not.
    #[arg(long)]
    pub check_config: bool,
}

/// Parses the flags and loads the config. `Err` is the exit code to use:
/// after `--check-config`, or on a config error (reported on stderr).
pub fn start<S: DeserializeOwned>(binary: &str) -> Result<(Common, S), ExitCode> {
    let cli = Cli::parse();
    let loaded = config::load::<S>(cli.config.as_deref(), binary);
    match (loaded, cli.check_config) {
        (Ok(_), true) => {
            println!("{binary}: config OK");
            Err(ExitCode::SUCCESS)
        }
        (Ok(loaded), false) => Ok(loaded),
        (Err(e), _) => {
            eprintln!("{binary}: bad config: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// Cancelled on SIGTERM or SIGINT: the binary then drains and exits.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown signal received; draining");
        cancel.cancel();
    });
    token
}
