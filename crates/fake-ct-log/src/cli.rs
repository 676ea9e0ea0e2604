//! The `fake-ct-log` binary's flags, and the log they configure.

use crate::FakeLogConfig;
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(about = "A fake RFC 6962 Certificate Transparency log")]
pub struct Args {
    /// Address to listen on; port 0 picks a free one (printed at start).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// PEM private key (P-256); created if missing, so the log keeps its identity.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Delay added to every CT response.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Fraction (0..=1) of submissions answered with 500.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Answer 503 on every CT endpoint.
    #[arg(long)]
    pub down: bool,
    /// Refuse certificates with this DNS name (repeatable).
    #[arg(long = "reject-name")]
    pub reject_names: Vec<String>,
}

impl Args {
    /// The log these flags describe (its key loaded or created).
    pub fn config(&self) -> anyhow::Result<FakeLogConfig> {
        let mut config = match &self.key {
            Some(path) => FakeLogConfig::new(crate::load_or_create_key(path)?),
            None => FakeLogConfig::generate()?,
        };
        config.latency = Duration::from_millis(self.latency_ms);
        config.error_rate = self.error_rate;
        config.down = self.down;
        config.reject_names = self.reject_names.clone();
        Ok(config)
    }
}
