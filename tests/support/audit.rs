//! `kiln audit` (issue 16) as the tests run it at the end of a scenario:
//! on an all-in-one's data directory ([`data_dir`]) or on a distributed
//! cluster's database with its CT logs and signer profile ([`cluster`]),
//! read back as its exit status and `--json` document ([`Verdict`]).

use crate::cluster::{Cluster, binary};
use serde_json::Value;
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

/// What one `kiln audit --json` run said.
#[derive(Debug)]
pub struct Verdict {
    /// 0 clean, 1 violations, 2 could not run.
    pub code: i32,
    pub doc: Value,
    pub took: Duration,
}

/// `kiln audit --json ARGS…`; panics if it prints no JSON document (it
/// could not run: see its stderr in the message).
pub fn run(args: &[OsString]) -> Verdict {
    let started = Instant::now();
    let out = std::process::Command::new(binary("kiln"))
        .arg("audit")
        .arg("--json")
        .args(args)
        // Its flags fall back on these; only the arguments count here.
        .env_remove("KILN_DATA_DIR")
        .env_remove("DATABASE_URL")
        .output()
        .expect("kiln audit runs (the binaries are built)");
    let took = started.elapsed();
    let code = out.status.code().expect("an exit code");
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "kiln audit {args:?} printed no JSON ({e}), exit {code}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Verdict { code, doc, took }
}

/// The audit of an all-in-one's data directory (its kiln.db and its fake
/// CT logs' keys), with `extra` flags.
pub fn data_dir(dir: &Path, extra: &[&str]) -> Verdict {
    let mut args: Vec<OsString> = vec!["--data-dir".into(), dir.into()];
    args.extend(extra.iter().map(OsString::from));
    run(&args)
}

/// The audit of a running cluster: its database, the ct-submitter's logs
/// and policy, the signer's profiles, CRL shards and URL base.
pub async fn cluster(cluster: &Cluster) -> Verdict {
    let args: Vec<OsString> = vec![
        "--database-url".into(),
        cluster.db_url.clone().into(),
        "--ct-config".into(),
        cluster.config_path("ct-submitter").into(),
        "--signer-config".into(),
        cluster.config_path("signer").into(),
    ];
    tokio::task::spawn_blocking(move || run(&args))
        .await
        .expect("audit task")
}

impl Verdict {
    pub fn violations(&self) -> u64 {
        self.doc["violations"].as_u64().expect("a violation count")
    }

    /// Check `id` (1–11) as reported.
    pub fn check(&self, id: u64) -> &Value {
        self.doc["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("check {id} is not reported: {:#}", self.doc))
    }

    /// One line: the exit status, the violations, and the checks by status
    /// (`pass 1-10, not-checked 11`).
    pub fn summary(&self) -> String {
        let mut by_status: Vec<(String, Vec<String>)> = Vec::new();
        for c in self.doc["checks"].as_array().into_iter().flatten() {
            let status = c["status"].as_str().unwrap_or("?").to_string();
            let mut what = c["id"].to_string();
            if status == "fail" {
                what = format!("{what} ({})", c["violation_count"]);
            }
            match by_status.iter_mut().find(|(s, _)| *s == status) {
                Some((_, ids)) => ids.push(what),
                None => by_status.push((status, vec![what])),
            }
        }
        let checks: Vec<String> = by_status
            .iter()
            .map(|(status, ids)| format!("{status} {}", ids.join(",")))
            .collect();
        format!(
            "exit {}, {} violations ({}) in {:.1}s",
            self.code,
            self.violations(),
            checks.join("; "),
            self.took.as_secs_f64()
        )
    }

    /// Exit 0, no violation, and every check made; otherwise panics with every failing check's first violations and every other
    /// check not made, with why (e.g. check 7 without CT log keys: the
    /// test's audit is missing its `--ct-config`).
    pub fn assert_clean(&self, label: &str) {
        let not_checked: Vec<String> = self.doc["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["status"] == "not-checked")
            .map(|c| {
                format!(
                    "check {} {} was not checked: {}",
                    c["id"], c["name"], c["why_not_checked"]
                )
            })
            .collect();
        if self.code == 0 && self.violations() == 0 && not_checked.is_empty() {
            return;
        }
        let mut failing = not_checked;
        for c in self.doc["checks"].as_array().into_iter().flatten() {
            if c["status"] == "fail" {
                let first: Vec<String> = c["violations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .take(10)
                    .map(Value::to_string)
                    .collect();
                failing.push(format!(
                    "check {} {} ({} violations):\n  {}",
                    c["id"],
                    c["name"],
                    c["violation_count"],
                    first.join("\n  ")
                ));
            }
        }
        panic!(
            "[{label}] kiln audit: {}\n{}",
            self.summary(),
            failing.join("\n")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::Verdict;
    use serde_json::json;
    use std::time::Duration;

    /// An audit with no violation whose checks `not_made` were not made.
    fn clean_but_for(not_made: &[u64]) -> Verdict {
        let checks: Vec<_> = (1..=11u64)
            .map(|id| {
                let made = !not_made.contains(&id);
                json!({
                    "id": id,
                    "name": format!("check{id}"),
                    "status": if made { "pass" } else { "not-checked" },
                    "why_not_checked": if made { None } else { Some("no data") },
                    "violation_count": 0,
                })
            })
            .collect();
        Verdict {
            code: 0,
            doc: json!({"violations": 0, "checks": checks}),
            took: Duration::ZERO,
        }
    }

    #[test]
    fn every_check_must_be_made() {
        clean_but_for(&[]).assert_clean("all made");
        for id in [1, 7, 10, 11] {
            let refused = std::panic::catch_unwind(|| clean_but_for(&[id]).assert_clean("t"));
            let message = *refused
                .expect_err("not clean")
                .downcast::<String>()
                .unwrap();
            assert!(
                message.contains(&format!(
                    "check {id} \"check{id}\" was not checked: \"no data\""
                )),
                "{message}"
            );
        }
    }
}
