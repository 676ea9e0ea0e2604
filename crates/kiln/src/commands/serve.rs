//! `kiln` without a subcommand: the whole CA in one process until Ctrl-C
//! or SIGTERM, with what is in force printed at start.

use crate::cli::ServeArgs;
use crate::{EmbeddedConfig, Kiln};

/// Starts the embedded Kiln, prints where it is, and runs until a signal.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = EmbeddedConfig::new(&args.data_dir);
    config.listen = args.listen;
    config.public_http_listen = Some(args.public_http_listen);
    config.certificate_base_url = args.public_base_url.clone();
    config.authz_reuse = std::time::Duration::from_secs(args.authz_reuse_secs);
    config.crl.shards = args.crl_shards;
    config.crl.publish_within_secs = args.crl_publish_within;
    config.dns_server = args.dns_server;
    config.http01_port = args.http01_port;
    config.tlsalpn01_port = args.tlsalpn01_port;
    config.admin_listen = args.admin_listen;
    config.finalize_timeout = args.finalize_timeout;
    config.allowed_special_use_domains = args.allowed_special_use_domains();
    config.blocked_names = args.blocked_names.clone();
    config.blocked_names_file = args.blocked_names_file.clone();
    config.public_suffix_list = args.public_suffix_list.clone();
    config.debian_weak_key_files = args.debian_weak_keys.clone();
    config.rate_limits = args.rate_limits()?;
    config.terms_of_service = args.terms_of_service.clone();
    config.external_account_required = args.external_account_required;
    config.alternate_chain = args.alternate_chain;
    config.mpic.perspectives = args.perspectives.clone();
    config.mpic.deadline = args.mpic_deadline;
    if args.mpic_observe_only {
        config.mpic.enforcement = mpic::quorum::Enforcement::ObserveOnly;
    }
    config.max_in_flight_requests = args.max_in_flight_requests;
    if !args.challenge_types.is_empty() {
        config.challenge_types.clear();
        for kind in &args.challenge_types {
            if !config.challenge_types.contains(kind) {
                config.challenge_types.push(*kind); // once, though named twice
            }
        }
    }
    let rate_limits = match config.rate_limits == Default::default() {
        true => "none".to_string(),
        false => config
            .rate_limits
            .describe()
            .into_iter()
            .filter(|(_, max, _)| *max > 0)
            .map(|(what, max, window)| format!("{what}: {max} per {window}"))
            .collect::<Vec<_>>()
            .join("; "),
    };
    let special_use = match config.allowed_special_use_domains.join(", ") {
        none if none.is_empty() => "none".to_string(),
        some => some,
    };
    config.ct_policy = ct_submitter::SubmitPolicy::laptop(args.finalize_timeout);
    if !args.ct_logs.is_empty() {
        config.fake_ct_logs = 0;
        config.external_ct_logs = args.ct_logs;
    }
    let knobs = args.knobs.knobs();
    let knob_lines = knobs.describe();
    if knobs.active() || args.knobs.mgmt_listen.is_some() {
        config.knobs = Some(knobs);
        config.mgmt_listen = args.knobs.mgmt_listen;
    }
    let policy = match &args.finalize_schedule {
        Some(path) => api::FinalizePolicy::from_file(path).map_err(anyhow::Error::msg)?,
        None => api::FinalizePolicy::fixed(args.finalize_mode),
    };
    config.finalize = api::PolicyHandle::new(policy);
    if let Some(path) = &args.finalize_schedule {
        api::finalize_policy::reload_on_sighup(path.clone(), config.finalize.clone());
    }
    let mode = match &args.finalize_schedule {
        Some(path) => format!("schedule {}", path.display()),
        None => args.finalize_mode.as_str().to_string(),
    };
    if args.admin_listen.is_some() {
        // Before the stages start, so the series they create at zero
        // (retries, dead letters) are recorded too.
        service::admin::install_metrics();
    }
    let kiln = Kiln::start(config).await?;
    println!("Kiln is running.");
    println!("  ACME directory: {}", kiln.directory_url);
    println!("  Root certificate: {}", kiln.root_pem_path.display());
    println!(
        "  Issuer certificate (AIA, plain HTTP): {}{}",
        kiln.public_base_url,
        api::public_http::ISSUER_PATH
    );
    println!(
        "  CRLs (plain HTTP): {}{}<issuer>/<shard>.crl, {} shards, revocations listed within {} s",
        kiln.public_base_url,
        store::CRL_PATH,
        args.crl_shards,
        args.crl_publish_within
    );
    println!("  Finalize mode: {mode}");
    println!("  Special-use domains issued for: {special_use}");
    println!("  Rate limits: {rate_limits}");
    if let Some(admin) = args.admin_listen {
        println!("  Metrics: http://{admin}/metrics   Client compatibility: http://{admin}/compat");
    }
    if !knob_lines.is_empty() || args.knobs.mgmt_listen.is_some() {
        println!("  Client-testing knobs (not for production):");
        for line in &knob_lines {
            println!("    {line}");
        }
        if let Some(mgmt) = args.knobs.mgmt_listen {
            println!("    management API: http://{mgmt}/knobs");
        }
    }
    println!("Press Ctrl-C to stop.");
    wait_for_signal().await?;
    println!("Shutting down…");
    kiln.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}
