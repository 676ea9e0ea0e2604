//! The dependency rules of DESIGN.md, checked on the real manifests: a
//! violation fails CI instead of waiting for a reviewer to notice.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const STAGES: [&str; 5] = ["api", "validator", "caa-checker", "signer", "ct-submitter"];

/// Each workspace crate's normal (non-dev) dependencies.
fn normal_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(kiln_tests::cluster::workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().expect("name").to_string())
                .collect();
            (p["name"].as_str().expect("name").to_string(), deps)
        })
        .collect()
}

#[test]
fn dependencies_point_one_way() {
    let deps = normal_dependencies();
    let ours: BTreeSet<&str> = deps.keys().map(String::as_str).collect();
    let on_ours = |krate: &str| -> BTreeSet<String> {
        deps[krate]
            .iter()
            .filter(|d| ours.contains(d.as_str()))
            .cloned()
            .collect()
    };
    // proto and domain are the bottom: no Kiln crate below them, no IO.
    assert!(
        on_ours("proto").is_empty(),
        "proto depends on {:?}",
        on_ours("proto")
    );
    assert!(
        on_ours("domain").is_empty(),
        "domain depends on {:?}",
        on_ours("domain")
    );
    for io in ["sqlx", "tokio", "reqwest", "lapin", "openssl"] {
        assert!(
            !deps["domain"].contains(io),
            "domain must stay pure, but uses {io}"
        );
    }
    // store and queue sit on domain and proto only.
    for krate in ["store", "queue"] {
        let allowed: BTreeSet<String> = ["domain", "proto"].map(String::from).into();
        assert!(
            on_ours(krate).is_subset(&allowed),
            "{krate} depends on {:?}",
            on_ours(krate)
        );
    }
    // No stage depends on another stage; only `kiln` (and the tests) on all.
    for stage in STAGES {
        let others: Vec<_> = STAGES
            .iter()
            .filter(|s| **s != stage && deps[stage].contains(**s))
            .collect();
        assert!(
            others.is_empty(),
            "stage {stage} depends on stages {others:?}"
        );
    }
    for (krate, d) in &deps {
        let stages = STAGES.iter().filter(|s| d.contains(**s)).count();
        if stages > 1 {
            assert!(
                krate == "kiln" || krate == "kiln-tests",
                "{krate} depends on {stages} stages"
            );
        }
    }
    // Only the signer holds CA keys: no other production crate links it.
    for (krate, d) in &deps {
        if d.contains("signer") {
            assert!(
                krate == "kiln" || krate == "kiln-tests",
                "{krate} links the signer"
            );
        }
    }
    // The rustls-based test client never reaches a production binary.
    for (krate, d) in &deps {
        if d.contains("instant-acme") {
            assert!(
                krate == "kiln-tests" || krate == "kiln-bench",
                "{krate} links instant-acme"
            );
        }
    }
}

/// Every Rust source file under `crates/*/src`, with its text.
fn crate_sources() -> Vec<(std::path::PathBuf, String)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).expect("readable source dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("readable source");
                out.push((path, text));
            }
        }
    }
    let crates = kiln_tests::cluster::workspace_root().join("crates");
    let mut out = Vec::new();
    for krate in std::fs::read_dir(&crates).expect("crates/") {
        let src = krate.expect("dir entry").path().join("src");
        if src.is_dir() {
            walk(&src, &mut out);
        }
    }
    assert!(out.len() > 50, "found only {} sources", out.len());
    out
}

/// The layout README promises: rooms of a readable size, and mains that
/// only wire. A file may be longer when it is one cohesive thing that
/// reads top to bottom, and says so (and why) in its opening doc comment.
#[test]
fn files_stay_small_and_mains_only_wire() {
    const MAX_LINES: usize = 600;
    const MAX_MAIN_LINES: usize = 60;
    let mut too_long = Vec::new();
    for (path, text) in crate_sources() {
        let lines = text.lines().count();
        let is_main = path.file_name().is_some_and(|n| n == "main.rs")
            || path.parent().is_some_and(|p| p.ends_with("src/bin"));
        let opening: String = text.lines().take(20).collect::<Vec<_>>().join("\n");
        let justified = opening.contains("one cohesive");
        if is_main && lines > MAX_MAIN_LINES {
            too_long.push(format!(
                "{} ({lines} lines; a main wires, ≤ {MAX_MAIN_LINES})",
                path.display()
            ));
        } else if lines > MAX_LINES && !justified {
            too_long.push(format!(
                "{} ({lines} lines; split it, or say at its top why it is one cohesive thing)",
                path.display()
            ));
        }
    }
    assert!(too_long.is_empty(), "{too_long:#?}");
}

/// The client-testing knobs (Retry-After rewriting, injected faults) plug
/// into the api through `api::hooks::ClientTestHooks`; only the all-in-one
/// `kiln` implements or sets them, so no production binary can turn them on.
#[test]
fn only_the_all_in_one_sets_the_client_testing_hooks() {
    for (path, text) in crate_sources() {
        let shown = path.display().to_string();
        let in_kiln = shown.contains("crates/kiln/src");
        let in_api = shown.contains("crates/api/src");
        if text.contains("impl ClientTestHooks for") {
            assert!(in_kiln, "{shown} implements the client-testing hooks");
        }
        if text.contains("client_test_hooks = Some") || text.contains("client_test_hooks: Some") {
            assert!(in_kiln, "{shown} turns the client-testing hooks on");
        }
        if !in_kiln && !in_api {
            assert!(
                !text.contains("ClientTestHooks") && !text.contains("client_test_hooks"),
                "{shown} reaches for the client-testing hooks"
            );
        }
    }
}
