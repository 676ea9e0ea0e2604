//! `kiln`: the whole CA in one process, for laptops and client authors, and
//! the operator's commands for the distributed deployment (`kiln::cli`).

use clap::Parser;

/// glibc's malloc took 14 % of the all-in-one's CPU under load in
/// `bench/profile.sh` (`_int_malloc`, `_int_free`, `malloc_consolidate`:
/// many small short-lived allocations, freed on other threads); with
/// mimalloc's thread-local free lists `bench/scenario1.sh` measured 18 %
/// less CPU per order, at the price of a larger peak RSS (BENCHMARKS.md).
/// The distributed binaries keep glibc's until their RSS is measured.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = kiln::cli::Cli::parse();
    // Logs (JSON when not on a terminal) and traces. Spans are exported only
    // when OTEL_EXPORTER_OTLP_ENDPOINT (or …_TRACES_ENDPOINT) is set; the
    // other OTEL_* variables apply too. The guard flushes them on return.
    let _telemetry = service::telemetry::init("kiln", &service::config::Telemetry::default());
    cli.run().await
}
