//! `kiln conformance`: the flags, then the scorecard printed (text or
//! JSON), the HTML page written, and the exit status: 0 only when every
//! required scenario passed; 130 (143) after a SIGINT (SIGTERM), which
//! stops the client and Kiln and prints no scorecard.

use crate::conformance;
use clap::Args;
use std::path::PathBuf;

/// Run an ACME client once per scenario against a fresh all-in-one Kiln
/// and judge, from Kiln's own records, whether it coped (exit 0 only when
/// every required scenario passed). In the client command,
/// {directory} {root} {domain} {http01_port} {tlsalpn01_port} {email}
/// {workdir} are replaced by the scenario's values, e.g.
/// `kiln conformance -- lego --server {directory} --accept-tos --email
/// {email} --http --http.port :{http01_port} --domains {domain} --path
/// {workdir} run` (with LEGO_CA_CERTIFICATES pointing at {root}).
#[derive(Args, Debug)]
pub struct ConformanceArgs {
    /// Print the scorecard as one JSON document.
    #[arg(long)]
    json: bool,
    /// Also write the scorecard as a self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Run only these scenarios (repeatable, or comma-separated): baseline,
    /// processing-polls, retry-after-seconds, retry-after-http-date,
    /// retry-after-too-short, retry-after-absent, bad-nonce, rate-limited,
    /// unavailable, order-invalid, stall, restart, dns-persist-01,
    /// alternate-chain, profile, ari-renewal.
    #[arg(long = "scenario", value_name = "NAME", value_delimiter = ',', num_args = 1..)]
    scenarios: Vec<String>,
    /// Each run of the client is killed after this (e.g. 90s, 2m).
    #[arg(long, default_value = "120s", value_parser = crate::knobs::parse_duration)]
    timeout: std::time::Duration,
    /// The client's name in the scorecard (default: the program's name).
    #[arg(long)]
    client_name: Option<String>,
    /// Keep each scenario's Kiln data and client work directories.
    #[arg(long)]
    keep: bool,
    /// The client command, after `--`.
    #[arg(last = true, required = true, value_name = "CLIENT COMMAND")]
    command: Vec<String>,
}

pub async fn run(args: ConformanceArgs) -> anyhow::Result<()> {
    let options = conformance::Options {
        command: args.command,
        scenarios: args.scenarios,
        timeout: args.timeout,
        client_name: args.client_name,
        keep: args.keep,
    };
    let card = match conformance::run(&options).await {
        Ok(card) => card,
        Err(e) => match e.downcast_ref::<conformance::Interrupted>() {
            Some(interrupted) => {
                eprintln!("kiln conformance: {interrupted}");
                std::process::exit(interrupted.exit_code);
            }
            None => return Err(e),
        },
    };
    if args.json {
        println!("{}", card.to_json());
    } else {
        print!("{}", card.to_text());
    }
    if let Some(path) = &args.html {
        conformance::write_html(&card, path)?;
    }
    if !card.all_passed() {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Wrapper {
        #[command(flatten)]
        args: super::ConformanceArgs,
    }

    #[test]
    fn the_client_command_follows_the_double_dash() {
        let parsed = Wrapper::try_parse_from([
            "kiln",
            "--json",
            "--scenario",
            "baseline,stall",
            "--scenario",
            "restart",
            "--timeout",
            "90s",
            "--",
            "lego",
            "--server",
            "{directory}",
            "run",
        ])
        .unwrap()
        .args;
        assert!(parsed.json);
        assert_eq!(parsed.scenarios, ["baseline", "stall", "restart"]);
        assert_eq!(parsed.timeout, std::time::Duration::from_secs(90));
        assert_eq!(parsed.command, ["lego", "--server", "{directory}", "run"]);
        assert!(
            Wrapper::try_parse_from(["kiln", "--json"]).is_err(),
            "a command is required"
        );
        let mut command =
            <super::ConformanceArgs as clap::Args>::augment_args(clap::Command::new("x"));
        let help = command.render_long_help().to_string();
        for name in crate::conformance::scenario_names() {
            assert!(help.contains(name), "--help names {name}");
        }
    }
}
