//! `kiln conformance`: puts an ACME client through the behaviours a real CA
//! can show and judges, per behaviour, whether it coped (issue 17).
//!
//! Each scenario gets a fresh all-in-one Kiln (`server`) with the knobs the
//! scenario names (`scenarios`); the client command runs once against it
//! (`client`); what the client did is measured from Kiln's own records —
//! its request log, the order's timeline, the compat observations — and
//! the client's exit (`evidence`), then judged by the scenario's rule
//! (`judge`). `report` and `html` render the scorecard.

mod cleanup;
mod client;
mod evidence;
mod html;
mod judge;
mod report;
mod runner;
mod scenarios;
mod server;

pub use cleanup::Interrupted;
pub use report::Scorecard;

use anyhow::Context;
use cleanup::{ScratchDir, Signals};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What `kiln conformance` was asked.
#[derive(Clone, Debug)]
pub struct Options {
    /// The client command, with placeholders.
    pub command: Vec<String>,
    /// Scenario names; empty: all.
    pub scenarios: Vec<String>,
    /// Each run of the client is killed after this.
    pub timeout: Duration,
    /// The client's name in the scorecard (default: the program's).
    pub client_name: Option<String>,
    /// Keep each scenario's data and work directories.
    pub keep: bool,
}

/// The names of every scenario (the `--help` test checks each is named).
#[cfg(test)]
pub fn scenario_names() -> Vec<&'static str> {
    scenarios::all().iter().map(|s| s.name).collect()
}

/// Runs every selected scenario and returns the scorecard; progress goes
/// to stderr. A scenario that cannot be run to the end is reported as
/// such (FAIL when required) and the next one runs. A SIGINT or SIGTERM
/// at any moment stops the client (its whole process group) and Kiln and
/// returns [`Interrupted`]; the scratch directory, which holds the CA's
/// private keys, is removed on every way out unless `keep`.
pub async fn run(options: &Options) -> anyhow::Result<Scorecard> {
    let selected = scenarios::select(&options.scenarios).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        !options.command.is_empty(),
        "give the client command after --"
    );
    let signals = Signals::watch()?;
    let base = ScratchDir::create(&random_label(), options.keep)?;
    let mut results = Vec::new();
    for scenario in &selected {
        if let Some(signal) = signals.received() {
            return Err(signal.into());
        }
        eprintln!("kiln conformance: {} ({})", scenario.name, scenario.does);
        let dir = base.path().join(scenario.name);
        let outcome = tokio::select! {
            biased;
            signal = signals.wait() => Err(signal),
            outcome = runner::scenario(scenario, options, &dir) => Ok(outcome),
        };
        let result = match outcome {
            // The scenario's future is dropped: its client's process group
            // killed, its Kiln's tasks aborted. A moment for those to let
            // go of the data directory, which goes with `base`.
            Err(signal) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                return Err(signal.into());
            }
            Ok(Ok(result)) => result,
            Ok(Err(e)) => {
                let error = format!("{e:#}");
                eprintln!("kiln conformance: {}: {error}", scenario.name);
                report::ScenarioResult::errored(scenario, error)
            }
        };
        eprintln!(
            "kiln conformance: {} {}",
            result.verdict.as_str(),
            result.why
        );
        results.push(result);
    }
    if options.keep {
        eprintln!(
            "kiln conformance: directories kept in {}",
            base.path().display()
        );
    }
    drop(base);
    let name = options
        .client_name
        .clone()
        .unwrap_or_else(|| client::client_name(&options.command));
    Ok(Scorecard::new(name, options.command.clone(), results))
}

/// Writes the scorecard's HTML page to `path`.
pub fn write_html(card: &Scorecard, path: &Path) -> anyhow::Result<()> {
    std::fs::write(path, html::render(card)).with_context(|| format!("writing {}", path.display()))
}

/// Eight random hex digits.
fn random_label() -> String {
    let mut bytes = [0u8; 4];
    if openssl::rand::rand_bytes(&mut bytes).is_err() {
        bytes = std::process::id().to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
