//! `api --check-config` builds what `[api]` names, as a start would: the
//! identifier policy (its blocklist entries and files) and the Debian
//! weak-key lists. A bad entry or file exits 2 naming it at check time, not
//! only when the api starts.

use std::path::{Path, PathBuf};
use std::process::Command;

const API: &str = env!("CARGO_BIN_EXE_api");

/// Exit code and stderr of `api --config <[api] with own> --check-config`.
fn check(own: &str) -> (Option<i32>, String) {
    let config = tempfile::NamedTempFile::new().unwrap();
    let text = format!(
        "[database]\nurl = \"sqlite://unused.db\"\n[acme]\nbase_url = \"https://a\"\n\
         [api]\nlisten = \"127.0.0.1:1\"\n{own}"
    );
    std::fs::write(config.path(), text).unwrap();
    let out = Command::new(API)
        .arg("--config")
        .arg(config.path())
        .arg("--check-config")
        .env_remove("KILN_CONFIG")
        .output()
        .expect("the api binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn quoted(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

#[test]
fn the_deployment_example_passes() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config/api.toml");
    let out = Command::new(API)
        .arg("--config")
        .arg(example)
        .arg("--check-config")
        .env_remove("KILN_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn a_bad_blocklist_entry_or_file_exits_2() {
    assert_eq!(check("blocked_names = [\".corp.example\"]\n").0, Some(0));
    let (code, stderr) = check("blocked_names = [\"a..b\"]\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("a..b"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("blocked-names.txt");
    let (code, stderr) = check(&format!("blocked_names_file = {}\n", quoted(&missing)));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("blocked-names.txt"), "{stderr}");
    std::fs::write(&missing, "# ok\nfine.example\nbad..example\n").unwrap();
    let (code, stderr) = check(&format!("blocked_names_file = {}\n", quoted(&missing)));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("bad..example"), "{stderr}");
}

#[test]
fn a_missing_or_malformed_weak_key_list_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let list: PathBuf = dir.path().join("blacklist.RSA-2048");
    let own = format!("debian_weak_key_files = [{}]\n", quoted(&list));
    let (code, stderr) = check(&own);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("blacklist.RSA-2048"), "{stderr}");

    std::fs::write(&list, "# header\n0123456789abcdef0123\n0123\n").unwrap();
    let (code, stderr) = check(&own);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("blacklist.RSA-2048:3"), "{stderr}");

    std::fs::write(&list, "# header\n0123456789abcdef0123\n").unwrap();
    let (code, stderr) = check(&own);
    assert_eq!(code, Some(0), "{stderr}");
}
