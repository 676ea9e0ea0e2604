//! `validator --check-config` works out the roles as a start would: a
//! primary listing fewer remote perspectives than the Baseline Requirements
//! require (3.2.2.9), outside a test deployment, or a bad perspective name
//! exits 2 naming the setting at check time, not only when it starts.

use std::path::Path;
use std::process::Command;

const VALIDATOR: &str = env!("CARGO_BIN_EXE_validator");

/// Exit code and stderr of `validator --config <[validator] with own> --check-config`.
fn check(own: &str) -> (Option<i32>, String) {
    let config = tempfile::NamedTempFile::new().unwrap();
    let text = format!(
        "[database]\nurl = \"sqlite://unused.db\"\n[acme]\nbase_url = \"https://a\"\n\
         [validator]\n{own}"
    );
    std::fs::write(config.path(), text).unwrap();
    let out = Command::new(VALIDATOR)
        .arg("--config")
        .arg(config.path())
        .arg("--check-config")
        .env_remove("KILN_CONFIG")
        .output()
        .expect("the validator binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Five remotes in three regions: the BRs' highest phase (2026-12-15).
const FIVE: &str = "remotes = [\"a@ARIN\", \"b@RIPE\", \"c@APNIC\", \"d@ARIN\", \"e@RIPE\"]\n";

#[test]
fn too_few_remotes_exit_2_naming_the_mpic_settings() {
    // One remote is below every phase of the minimum since 2025-03-15.
    let (code, stderr) = check("[validator.mpic]\nremotes = [\"a@ARIN\"]\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("[validator.mpic]"), "{stderr}");
    assert!(stderr.contains("lists 1 remote perspectives"), "{stderr}");
    assert!(stderr.contains("test_deployment"), "{stderr}");
    // No [validator.mpic] at all is a primary asking no one.
    let (code, stderr) = check("");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("[validator.mpic]"), "{stderr}");

    let (code, stderr) = check(&format!("[validator.mpic]\n{FIVE}"));
    assert_eq!(code, Some(0), "{stderr}");
    let test = "[validator.mpic]\nremotes = [\"a@ARIN\"]\ntest_deployment = true\n";
    assert_eq!(check(test).0, Some(0));
}

#[test]
fn remotes_without_regions_exit_2_outside_a_test_deployment() {
    let names = FIVE.replace("a@ARIN", "a");
    let (code, stderr) = check(&format!("[validator.mpic]\n{names}"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("[validator.mpic]"), "{stderr}");
    assert!(stderr.contains("no region"), "{stderr}");
}

#[test]
fn a_remote_perspective_needs_a_valid_name_and_no_remotes() {
    assert_eq!(check("perspective = \"arin-1@ARIN\"\n").0, Some(0));
    let (code, stderr) = check("perspective = \"arin-1@MARS\"\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("[validator] perspective"), "{stderr}");
    assert!(stderr.contains("MARS"), "{stderr}");
}

#[test]
fn the_deployment_example_passes() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config/validator.toml");
    let out = Command::new(VALIDATOR)
        .arg("--config")
        .arg(example)
        .arg("--check-config")
        .env_remove("KILN_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}
