//! `kiln audit`: checks what Kiln stored against what it must have done
//! (issue 16), as Boulder's cert-checker does: every order, authorization
//! and certificate, read a page at a time (`store::audit`), so a database
//! of millions of rows is audited in bounded memory. Each violation is
//! printed with its check and its serial or order id; the exit status is
//! 1 if there is any, 0 if none, 2 when the audit could not run.
//!
//! - `report`: the checks, their results and the output;
//! - `scan`: paging through orders and handing each to the checks;
//! - `certs`: checks 1, 2 (per serial), 3 and 6, on one certificate row;
//! - `identifiers`: checks 4 and 5 (authorizations, CAA);
//! - `lint` and `scts`: checks 8 and 7;
//! - `revocation`: check 9; `orders`: check 10; `messages`: check 11;
//! - `settings`: what the flags and config files say to check against;
//! - `der` and `serials`: the pure parts.

mod certs;
mod der;
mod identifiers;
mod lint;
mod messages;
mod orders;
mod report;
mod revocation;
mod scan;
mod scts;
mod serials;
mod settings;

use clap::Args;
use std::path::PathBuf;

/// `kiln audit`'s flags.
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// The all-in-one's data directory: its kiln.db, and its fake CT logs'
    /// keys (DIR/ct-logs) for check 7.
    #[arg(
        long,
        env = "KILN_DATA_DIR",
        default_value = "./kiln-data",
        conflicts_with = "database_url"
    )]
    pub data_dir: PathBuf,
    /// A deployment's database (postgres://… or sqlite://PATH).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Only orders made, finalized or finished at or after this time (and
    /// their certificates): RFC 3339 or unix milliseconds.
    #[arg(long, value_parser = settings::parse_since)]
    pub since: Option<i64>,
    /// One JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// A CT log whose SCTs count (check 7): URL=PUBLIC_KEY (base64 DER),
    /// its own operator. Repeatable; with the logs of --ct-config and of
    /// the data directory.
    #[arg(long = "ct-log", value_name = "URL=KEY", value_parser = settings::parse_ct_log)]
    pub ct_logs: Vec<ct_submitter::CtLog>,
    /// The ct-submitter's config file: its logs, and its policy (SCTs and
    /// operators needed) instead of the default.
    #[arg(long)]
    pub ct_config: Option<PathBuf>,
    /// The signer's config file: the profiles' lifetimes, the CRL shards
    /// and the base of the AIA and CRL URLs.
    #[arg(long)]
    pub signer_config: Option<PathBuf>,
    /// The base of the AIA and CRL URLs every leaf must name (the
    /// all-in-one's --public-base-url); default: the signer config's, else
    /// read from each certificate's AIA.
    #[arg(long)]
    pub public_base_url: Option<String>,
    /// How long a CAA check is good for before issuance (BR 3.2.2.8: 8 h).
    #[arg(long, default_value_t = 8 * 3600)]
    pub caa_window_secs: u64,
    /// How long past a deadline (an order's finalize or step deadline, a
    /// challenge's) something may stay `processing`, or after its dead
    /// letter an order stay unended, before it counts (the sweeper's step
    /// timeout and period).
    #[arg(long, default_value_t = 300)]
    pub deadline_grace_secs: u64,
    /// A Debian weak-key list (as `kiln --debian-weak-keys`); repeatable.
    #[arg(long = "debian-weak-keys", value_name = "FILE")]
    pub debian_weak_keys: Vec<PathBuf>,
    /// Orders read per page.
    #[arg(long, default_value_t = 500, hide = true)]
    pub page_size: i64,
}

/// Runs the audit and exits: 0 without violations, 1 with, 2 when it
/// could not run (no database, a bad config file).
pub async fn main(args: AuditArgs) -> ! {
    let started = std::time::Instant::now();
    let code = match scan::run(&args).await {
        Ok(report) => {
            report.print(started.elapsed());
            i32::from(report.total() > 0)
        }
        Err(e) => {
            eprintln!("kiln audit: {e:#}");
            2
        }
    };
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use crate::cli::Cli;
    use clap::Parser;

    /// Usage errors are clap's, which exit 2 as a connection error does.
    #[test]
    fn flags_parse_and_refuse_what_they_should() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["kiln", "audit"], args].concat());
        assert!(
            parse(&[
                "--database-url",
                "postgres://h/db",
                "--since",
                "0",
                "--json"
            ])
            .is_ok()
        );
        assert!(parse(&["--data-dir", "d", "--since", "2026-05-01T00:00:00Z"]).is_ok());
        let refused = [
            &["--data-dir", "d", "--database-url", "postgres://h/db"][..],
            &["--since", "last tuesday"],
            &["--ct-log", "http://log.test=not base64"],
            &["--ct-log", "no-key-here"],
        ];
        for args in refused {
            let e = parse(args).expect_err("refused");
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
    }
}
