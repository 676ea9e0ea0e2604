//! pkilint (PyPI), the CA/B Forum linter: its tools, found beside the
//! `python3` that has the package (as `.ci/run` installs it) or on PATH,
//! and a CRL lint. Missing, they fail the test naming the package: nothing
//! passes by skipping.

use std::path::{Path, PathBuf};

/// The pkilint script `name` (e.g. `lint_cabf_serverauth_cert`, `lint_crl`).
pub fn tool(name: &str) -> PathBuf {
    let scripts = std::process::Command::new("python3")
        .args([
            "-c",
            "import pkilint, sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output();
    if let Ok(out) = scripts
        && out.status.success()
    {
        let tool = Path::new(String::from_utf8_lossy(&out.stdout).trim()).join(name);
        if tool.is_file() {
            return tool;
        }
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|tool| tool.is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "{name} not found: install the PyPI package `pkilint` \
             (python3 -m pip install pkilint; .ci/run does this)"
        )
    })
}

/// Lints a CRL (DER) as the BRs' CRL profile (`lint_crl -t CRL -p BR`),
/// prints the report and panics on any ERROR or FATAL finding.
pub fn lint_crl_clean(der: &[u8], label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crl.der");
    std::fs::write(&path, der).unwrap();
    let out = std::process::Command::new(tool("lint_crl"))
        .args(["lint", "-t", "CRL", "-p", "BR", "-s", "NOTICE"])
        .args(["--document-format", "DER"])
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
