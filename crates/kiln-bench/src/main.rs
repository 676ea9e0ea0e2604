//! `kiln-bench`: an ACME load generator. It drives N complete issuances at
//! concurrency C against any ACME directory (Kiln, Pebble, …): accounts are
//! created before the clock starts; then, per order: new order, challenge
//! answered (its own http-01 responder, or pebble-challtestsrv's `/set-txt`
//! for dns-01), finalize, poll (honouring `Retry-After`, or at a fixed
//! interval), download. It reports orders/s, finalize POST latency,
//! finalize→valid latency, whole-issuance latency and errors by kind, as
//! text or JSON.
//!
//! Loopback use only: it refuses a directory or challenge-server URL whose
//! host is not a loopback address or `localhost`.
//!
//! Layout: `args` (the command line), `run` (setup and the driver loop),
//! `issue` (one issuance and its measurements), `responder` (challenge
//! responses), `transport` (HTTP with `Retry-After`), `report` and `stats`
//! (the output).

mod args;
mod issue;
mod report;
mod responder;
mod run;
mod stats;
mod transport;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = args::Args::parse();
    args.check()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let report = runtime.block_on(run::run(args.clone()))?;
    let text = report.text();
    if args.json {
        eprint!("{text}");
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{text}");
    }
    Ok(())
}
