//! `kiln conformance`: puts an ACME client through the behaviours a real CA
//! can show and judges, per behaviour, whether it coped (issue 17).
//!
//! Each scenario gets a fresh all-in-one Kiln (`server`) with the knobs the
//! scenario names (`scenarios`); the client command runs once against it
//! (`client`); what the client did is measured from Kiln's own records —
//! its request log, the order's timeline, the compat observations — and
//! the client's exit (`evidence`), then judged by the scenario's rule
//! (`judge`). `report` and `html` render the scorecard.

mod client;
mod evidence;
mod html;
mod judge;
mod report;
mod scenarios;
mod server;

pub use report::Scorecard;

use anyhow::Context;
use scenarios::Scenario;
use server::ScenarioKiln;
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
/// to stderr.
pub async fn run(options: &Options) -> anyhow::Result<Scorecard> {
    let selected = scenarios::select(&options.scenarios).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        !options.command.is_empty(),
        "give the client command after --"
    );
    let base = std::env::temp_dir().join(format!("kiln-conformance-{}", random_label()));
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let mut results = Vec::new();
    for scenario in &selected {
        eprintln!("kiln conformance: {} ({})", scenario.name, scenario.does);
        let dir = base.join(scenario.name);
        let result = run_scenario(scenario, options, &dir)
            .await
            .with_context(|| format!("scenario {}", scenario.name))?;
        eprintln!(
            "kiln conformance: {} {}",
            result.verdict.as_str(),
            result.why
        );
        results.push(result);
    }
    if options.keep {
        eprintln!("kiln conformance: directories kept in {}", base.display());
    } else {
        let _ = std::fs::remove_dir_all(&base);
    }
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

async fn run_scenario(
    scenario: &Scenario,
    options: &Options,
    dir: &Path,
) -> anyhow::Result<report::ScenarioResult> {
    let (data_dir, workdir) = (dir.join("kiln"), dir.join("work"));
    std::fs::create_dir_all(&workdir)?;
    let (http01_port, tlsalpn01_port) = (server::free_port()?, server::free_port()?);
    let setup = &scenario.setup;
    let mut kiln = ScenarioKiln::start(setup, &data_dir, http01_port, tlsalpn01_port).await?;
    let placeholders = client::Placeholders {
        directory: kiln.directory_url(),
        root: kiln.root_pem_path(),
        domain: format!("{}-{}.conformance.test", scenario.name, random_label()),
        http01_port,
        tlsalpn01_port,
        email: "conformance@kiln.test".into(),
        workdir: absolute(&workdir),
    };
    let (command, limit, out_dir) = (options.command.clone(), options.timeout, dir.to_path_buf());
    let client =
        tokio::spawn(async move { client::run(&command, &placeholders, limit, &out_dir).await });
    let restarted = match &setup.restart_with {
        Some(after) => restart_when_processing(&mut kiln, &client, after.clone()).await,
        None => Ok(()),
    };
    if restarted.is_err() {
        client.abort();
    }
    let run = client.await;
    let records = kiln.records().await;
    kiln.shutdown().await;
    restarted?;
    let run = run.context("the client task")??;
    let evidence = evidence::measure(&records?, &run);
    let (verdict, why) = judge::judge(scenario.rule, &evidence);
    Ok(report::ScenarioResult {
        name: scenario.name.to_string(),
        verdict,
        required: scenario.required,
        does: scenario.does.to_string(),
        source: scenario.source.to_string(),
        why,
        evidence,
    })
}

/// Restarts Kiln once the client's finalize was accepted (the order is
/// then `processing`), unless the client finishes first.
async fn restart_when_processing<T>(
    kiln: &mut ScenarioKiln,
    client: &tokio::task::JoinHandle<T>,
    knobs: crate::knobs::Knobs,
) -> anyhow::Result<()> {
    while !client.is_finished() {
        let requests = kiln.requests().await?;
        if requests
            .iter()
            .any(|r| r.endpoint == "finalize" && r.fault.is_none())
        {
            // Let the client read `processing` and start waiting.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return kiln.restart(knobs, server::RESTART_DOWNTIME).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
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
