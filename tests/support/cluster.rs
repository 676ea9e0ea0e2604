//! What the tests that run Kiln distributed (`deploy/local/cluster.sh`)
//! share: the workspace, the binaries, the broker.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Builds every binary cluster.sh starts. `cargo test` holds the build lock
/// only while building, so this works from inside a test (and is a no-op
/// when the binaries are fresh).
pub fn build_binaries() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root()).args(["build", "-q"]);
    for package in [
        "kiln",
        "api",
        "validator",
        "caa-checker",
        "signer",
        "ct-submitter",
        "fake-ct-log",
    ] {
        command.args(["-p", package]);
    }
    let out = command
        .output()
        .map_err(|e| format!("running cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo build failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Waits until the broker accepts an AMQP connection (another test binary
/// may be restarting it); panics after `within`.
pub async fn wait_for_broker(within: Duration) {
    let until = Instant::now() + within;
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_secs(5),
            lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()),
        )
        .await;
        match attempt {
            Ok(Ok(connection)) => {
                let _ = connection.close(200, "probe".into()).await;
                return;
            }
            Ok(Err(e)) if Instant::now() > until => {
                panic!("RabbitMQ is not reachable at {}: {e}", amqp_url())
            }
            Err(_) if Instant::now() > until => {
                panic!("RabbitMQ at {} does not answer", amqp_url())
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
