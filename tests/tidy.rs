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
