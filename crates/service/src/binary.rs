//! The entry point every stage binary shares: flags, config and
//! `--check-config`, the runtime, telemetry, and the exit code. A stage's
//! `main` is then one call with the wiring that is its own.

use crate::config::{self, Common};
use clap::{Args, Parser};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit code of a bad config (`--check-config` or a start): the key is named
/// on stderr.
pub const BAD_CONFIG: u8 = 2;

/// The flags every stage binary takes.
#[derive(Parser, Debug)]
pub struct Cli<A: Args> {
    /// The binary's TOML config file; `KILN_<SECTION>__<KEY>` variables
    /// override it.
    #[arg(long, env = "KILN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Load and validate the config, then exit: 0 if it is good, 2 naming
    /// the bad key if not.
    #[arg(long)]
    pub check_config: bool,
    /// The binary's own flags.
    #[command(flatten)]
    pub own: A,
}

/// A binary without flags of its own.
#[derive(Args, Debug)]
pub struct NoFlags {}

/// Runs the stage binary `binary`: parses the flags, loads its config
/// (the shared sections and its own, `[binary]`, as `S`), answers
/// `--check-config`, then starts the runtime and telemetry and runs `run`.
/// An error from `run` is logged and exits 1.
pub fn main<S: DeserializeOwned>(
    binary: &'static str,
    run: impl AsyncFnOnce(Common, S) -> anyhow::Result<()>,
) -> ExitCode {
    main_with_flags(binary, async move |common, config, NoFlags {}| {
        run(common, config).await
    })
}

/// [`main`] for a binary with flags of its own (`A`), handed to `run`.
pub fn main_with_flags<S: DeserializeOwned, A: Args>(
    binary: &'static str,
    run: impl AsyncFnOnce(Common, S, A) -> anyhow::Result<()>,
) -> ExitCode {
    let cli = Cli::<A>::parse();
    let (common, config) = match load(binary, cli.config.as_deref(), cli.check_config) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{binary}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        // Flushes the spans not yet exported when the run ends.
        let _telemetry = crate::telemetry::init(binary, &common.telemetry);
        match run(common, config, cli.own).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "{binary} failed");
                ExitCode::FAILURE
            }
        }
    })
}

/// Loads the config of `binary`. `Err` is the exit code to use: after
/// `check_only` (0), or on a config error (2, reported on stderr).
fn load<S: DeserializeOwned>(
    binary: &str,
    path: Option<&Path>,
    check_only: bool,
) -> Result<(Common, S), ExitCode> {
    match (config::load::<S>(path, binary), check_only) {
        (Ok(_), true) => {
            println!("{binary}: config OK");
            Err(ExitCode::SUCCESS)
        }
        (Ok(loaded), false) => Ok(loaded),
        (Err(e), _) => {
            eprintln!("{binary}: bad config: {e}");
            Err(ExitCode::from(BAD_CONFIG))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Own {
        #[serde(default)]
        #[allow(dead_code)]
        knob: u32,
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    const GOOD: &str = "[database]\nurl = \"sqlite://x\"\n[acme]\nbase_url = \"https://a\"\n";

    #[test]
    fn check_config_exits_0_when_good_and_2_when_bad() {
        let good = write(GOOD);
        let bad = write(&format!("{GOOD}[signer]\nnob = 1\n"));
        let missing = Path::new("/nonexistent/kiln.toml");
        let load = |path: &Path, check| load::<Own>("signer", Some(path), check).map(|_| ());
        assert_eq!(load(good.path(), true), Err(ExitCode::SUCCESS));
        assert_eq!(load(bad.path(), true), Err(ExitCode::from(2)));
        assert_eq!(load(missing, true), Err(ExitCode::from(2)));
        // Without --check-config: a good config runs, a bad one exits 2.
        assert_eq!(load(good.path(), false), Ok(()));
        assert_eq!(load(bad.path(), false), Err(ExitCode::from(2)));
    }
}
