//! Kiln's CRLs pass pkilint's CA/B Forum CRL lint (`lint_crl -t CRL -p BR`)
//! without an ERROR or FATAL finding: empty, and with entries of each reason.

use signer::ca::CaHierarchy;
use signer::certificate::{CrlEntry, CrlReason, CrlRequest, crl_der};
use std::time::{SystemTime, UNIX_EPOCH};

/// pkilint's `lint_crl`, beside the `python3` that has the package (as
/// `.ci/run` installs it). Panics when missing: this test must not pass by
/// skipping.
fn lint_crl_tool() -> std::path::PathBuf {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import pkilint, sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "install the PyPI package pkilint (.ci/run does)"
    );
    let tool = std::path::Path::new(String::from_utf8_lossy(&out.stdout).trim()).join("lint_crl");
    assert!(tool.is_file(), "{} missing", tool.display());
    tool
}

fn lint(der: &[u8], label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{label}.der"));
    std::fs::write(&path, der).unwrap();
    let out = std::process::Command::new(lint_crl_tool())
        .args([
            "lint",
            "-t",
            "CRL",
            "-p",
            "BR",
            "-s",
            "NOTICE",
            "--document-format",
            "DER",
        ])
        .arg(&path)
        .output()
        .expect("run lint_crl");
    let report = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- lint_crl {label} ---\n{report}{stderr}");
    assert!(
        !stderr.contains("Traceback") && !stderr.contains("Failed to load"),
        "lint_crl did not run on {label}: {stderr}"
    );
    let errors: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("(ERROR)") || l.contains("(FATAL)"))
        .collect();
    assert!(errors.is_empty(), "{label}: {errors:#?}");
}

#[test]
fn pkilint_finds_no_error_in_kiln_crls() {
    let ca = CaHierarchy::generate().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let reasons = [
        CrlReason::Unspecified,
        CrlReason::KeyCompromise,
        CrlReason::AffiliationChanged,
        CrlReason::Superseded,
        CrlReason::CessationOfOperation,
        CrlReason::PrivilegeWithdrawn,
    ];
    let entries: Vec<CrlEntry> = reasons
        .iter()
        .enumerate()
        .map(|(i, &reason)| CrlEntry {
            // 16 random-looking bytes with the top bit set: a padded INTEGER.
            serial: (0..16u8)
                .map(|b| b.wrapping_mul(37) ^ (i as u8) | 0x80)
                .collect(),
            revoked_at: now - 3600 + i as i64,
            reason,
        })
        .collect();
    for (label, entries) in [("empty", &entries[..0]), ("six-reasons", &entries[..])] {
        let request = CrlRequest {
            number: 1_796_000_000_000 + entries.len() as u64,
            this_update: now,
            next_update: now + 7 * 24 * 3600,
            shard_url: "http://ca.kiln-lint.example.com/crl/5",
            entries,
        };
        lint(&crl_der(&ca.intermediate, &request).unwrap(), label);
    }
}
