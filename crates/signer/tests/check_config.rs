//! The signer binaries' `--check-config`: the production `signer` refuses
//! the benchmark knob, which only `signer-simulated-hsm` takes (as a flag).

use std::path::{Path, PathBuf};
use std::process::Command;

const SIGNER: &str = env!("CARGO_BIN_EXE_signer");
const SIMULATED_HSM: &str = env!("CARGO_BIN_EXE_signer-simulated-hsm");

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config/signer.toml")
}

/// Exit code and stderr of `binary --config config --check-config args…`.
fn check(binary: &str, config: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(binary)
        .arg("--config")
        .arg(config)
        .arg("--check-config")
        .args(args)
        .env_remove("KILN_CONFIG")
        .output()
        .expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_deployment_example_passes() {
    assert_eq!(check(SIGNER, &example(), &[]).0, Some(0));
    assert_eq!(
        check(SIMULATED_HSM, &example(), &["--simulated-latency-ms", "20"]).0,
        Some(0)
    );
}

#[test]
fn the_production_signer_refuses_simulated_latency() {
    let text = std::fs::read_to_string(example()).unwrap() + "simulated_latency_ms = 20\n";
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), text).unwrap();
    let (code, stderr) = check(SIGNER, config.path(), &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("simulated_latency_ms"), "{stderr}");
    // Not a config key of the benchmark signer either: it is a flag there.
    let (code, _) = check(
        SIMULATED_HSM,
        config.path(),
        &["--simulated-latency-ms", "20"],
    );
    assert_eq!(code, Some(2));
}
