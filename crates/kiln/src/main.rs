//! `kiln`: the whole CA in one process, for laptops and client authors, and
//! the operator's commands for the distributed deployment (`kiln::cli`).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = kiln::cli::Cli::parse();
    // Logs (JSON when not on a terminal) and traces. Spans are exported only
    // when OTEL_EXPORTER_OTLP_ENDPOINT (or …_TRACES_ENDPOINT) is set; the
    // other OTEL_* variables apply too. The guard flushes them on return.
    let _telemetry = service::telemetry::init("kiln", &service::config::Telemetry::default());
    cli.run().await
}
