//! Running real ACME clients (certbot, lego, …) from tests: found on PATH or
//! the test fails naming what to install (CI installs them; nothing skips),
//! run under a time limit with their output kept for the failure message.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::process::Command;

/// How long one client run may take before the test gives up on it.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// The absolute path of `program` on PATH; fails the test, naming what to
/// install, if it is not there.
pub fn require_binary(program: &str, install_hint: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| {
            panic!(
                "`{program}` is not on PATH; the interop test needs it: {install_hint} \
                 (.ci/run installs it)"
            )
        })
}

/// The first line a `--version` run printed.
pub async fn version(program: &Path) -> String {
    let output = Command::new(program).arg("--version").output().await;
    output
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            let text = String::from_utf8_lossy(&text);
            text.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_else(|e| format!("{} --version failed: {e}", program.display()))
}

/// What a client run left behind.
pub struct Run {
    pub status: std::process::ExitStatus,
    pub took: Duration,
    /// The client's output and logs, for failure messages.
    pub context: String,
}

/// Runs `command` within `CLIENT_TIMEOUT` (killing it after), its stdout
/// and stderr going to files in `out_dir` so that even a run that hangs
/// can be diagnosed; `logs` are the client's own log files.
pub async fn run(what: &str, mut command: Command, out_dir: &Path, logs: &[PathBuf]) -> Run {
    let (stdout, stderr) = (out_dir.join("stdout.txt"), out_dir.join("stderr.txt"));
    command
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&stdout).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        // Kiln is on loopback: never send the client through a proxy.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    let started = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{what} could not be started: {e}"));
    let status = tokio::time::timeout(CLIENT_TIMEOUT, child.wait()).await;
    let took = started.elapsed();
    if status.is_err() {
        let _ = child.kill().await;
    }
    let mut context = match &status {
        Ok(Ok(status)) => format!("{what} exited with {status} after {took:.1?}"),
        Ok(Err(e)) => format!("{what}: waiting for it failed: {e}"),
        Err(_) => format!("{what} did not finish within {CLIENT_TIMEOUT:?}; killed"),
    };
    for file in [stdout, stderr].iter().chain(logs) {
        let content = std::fs::read_to_string(file).unwrap_or_else(|e| format!("({e})"));
        context.push_str(&format!("\n--- {} ---\n{content}", file.display()));
    }
    match status {
        Ok(Ok(status)) => Run {
            status,
            took,
            context,
        },
        _ => panic!("{context}"),
    }
}
