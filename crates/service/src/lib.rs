//! What every Kiln binary shares, so each `main.rs` is a few lines of
//! wiring: config → telemetry → store → queue → run.

#![forbid(unsafe_code)]

pub mod admin;
mod binary;
pub mod config;
mod dead_letters;
pub mod telemetry;
mod worker;

pub use binary::{BAD_CONFIG, Cli, NoFlags, main, main_with_flags};
pub use config::{Common, ConfigError};
pub use dead_letters::{StoreDeadLetters, stage_io};
pub use worker::{Wiring, run_worker};

use tokio_util::sync::CancellationToken;

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
