//! One scenario, start to end: the ports held, Kiln started, the client
//! run (Kiln restarted under it in `restart`; a second run after the ARI
//! window moved in `ari-renewal`), Kiln's records read, Kiln stopped on
//! every path, and the verdict. An error is returned for the caller to
//! report; dropping this future half way (a signal) kills the client's
//! process group and aborts Kiln's tasks.

use super::client::{self, ClientRun, Placeholders};
use super::scenarios::Scenario;
use super::server::{self, Ports, Records, ScenarioKiln};
use super::{Options, absolute, evidence, judge, random_label, report};
use crate::knobs::Knobs;
use std::path::Path;
use std::time::Duration;

/// What the client did: its run, and the second one in `ari-renewal`.
struct Runs {
    records: Records,
    first: ClientRun,
    second: Option<ClientRun>,
}

pub async fn scenario(
    scenario: &Scenario,
    options: &Options,
    dir: &Path,
) -> anyhow::Result<report::ScenarioResult> {
    let (data_dir, workdir) = (dir.join("kiln"), dir.join("work"));
    std::fs::create_dir_all(&workdir)?;
    let mut ports = Ports::reserve()?;
    let mut kiln = ScenarioKiln::start(&scenario.setup, &data_dir, &ports).await?;
    let placeholders = Placeholders {
        directory: kiln.directory_url(),
        root: kiln.root_pem_path(),
        domain: format!("{}-{}.conformance.test", scenario.name, random_label()),
        http01_port: ports.http01,
        tlsalpn01_port: ports.tlsalpn01,
        email: "conformance@kiln.test".into(),
        workdir: absolute(&workdir),
    };
    // Held until now, so that Kiln could not take them: the client's.
    ports.release();
    let driven = drive(scenario, options, &mut kiln, &placeholders, dir).await;
    kiln.shutdown().await;
    let Runs {
        records,
        first,
        second,
    } = driven?;
    let measured = match second {
        Some(_) => records.until(first.ended_ms),
        None => records.clone(),
    };
    let evidence = evidence::measure(&measured, &first);
    let evidence = evidence::with_renewal(evidence, &records, first.ended_ms, second.as_ref());
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

/// Runs the client (twice in `ari-renewal`) and reads Kiln's records.
async fn drive(
    scenario: &Scenario,
    options: &Options,
    kiln: &mut ScenarioKiln,
    placeholders: &Placeholders,
    dir: &Path,
) -> anyhow::Result<Runs> {
    let setup = &scenario.setup;
    let command = &options.command;
    let restart = setup.restart_with.clone();
    let first = run_client(kiln, restart, command, placeholders, options.timeout, dir).await?;
    let mut second = None;
    // Only a certificate can be renewed.
    if setup.renewal_run && kiln.mark_renew_now().await? > 0 {
        let out = dir.join("renewal");
        std::fs::create_dir_all(&out)?;
        second = Some(client::run(command, placeholders, options.timeout, &out).await?);
    }
    Ok(Runs {
        records: kiln.records().await?,
        first,
        second,
    })
}

/// Runs the client; with `restart`, restarts Kiln under it once its
/// finalize was accepted (the order is then `processing`), unless it
/// finishes first. A restart, once begun, is finished even if the client
/// exits meanwhile; one that fails kills the client (dropping its run).
async fn run_client(
    kiln: &mut ScenarioKiln,
    restart: Option<Knobs>,
    command: &[String],
    placeholders: &Placeholders,
    limit: Duration,
    out_dir: &Path,
) -> anyhow::Result<ClientRun> {
    let mut client = std::pin::pin!(client::run(command, placeholders, limit, out_dir));
    let Some(knobs) = restart else {
        return client.await;
    };
    tokio::select! {
        run = &mut client => return run,
        seen = finalize_accepted(kiln) => seen?,
    }
    let mut restart = std::pin::pin!(async {
        // Let the client read `processing` and start waiting.
        tokio::time::sleep(Duration::from_millis(500)).await;
        kiln.restart(knobs, server::RESTART_DOWNTIME).await
    });
    let mut finished = None;
    loop {
        tokio::select! {
            run = &mut client, if finished.is_none() => finished = Some(run),
            restarted = &mut restart => {
                restarted?;
                break;
            }
        }
    }
    match finished {
        Some(run) => run,
        None => client.await,
    }
}

/// Returns once Kiln has accepted a finalize (one not answered by a fault).
async fn finalize_accepted(kiln: &ScenarioKiln) -> anyhow::Result<()> {
    loop {
        let log = kiln.requests().await?;
        if log
            .requests
            .iter()
            .any(|r| r.endpoint == "finalize" && r.fault.is_none())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
