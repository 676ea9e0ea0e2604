//! What the audit found, check by check: violations printed as they are
//! found (text) or gathered into one JSON document (`--json`), then a
//! summary per check. A check the data cannot support is `not-checked`
//! with its reason, never `pass`.

use serde_json::{Value, json};
use std::io::Write;

/// The checks of issue 16, by number.
pub const CHECKS: [(u8, &str); 11] = [
    (1, "final-matches-precert"),
    (2, "serial-numbers"),
    (3, "one-final-per-serial-and-order"),
    (4, "identifiers-authorized"),
    (5, "caa-checked"),
    (6, "validity-and-key"),
    (7, "embedded-scts"),
    (8, "lint"),
    (9, "revocation-status"),
    (10, "order-states"),
    (11, "message-accounting"),
];

/// Violations kept per check for the JSON document; beyond it they are
/// counted (and printed in text mode) but not kept, so that a systematic
/// fault over millions of rows does not hold them all in memory.
const KEPT_PER_CHECK: usize = 10_000;

/// What a violation is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    Serial(String),
    Order(String),
    /// The whole set of serials (the bit-frequency check).
    AllSerials,
}

#[derive(Debug)]
struct Check {
    id: u8,
    name: &'static str,
    checked: u64,
    violations: u64,
    kept: Vec<(Subject, String)>,
    not_checked: Option<String>,
    notes: Vec<String>,
}

pub struct Report {
    checks: Vec<Check>,
    json: bool,
}

impl Report {
    pub fn new(json: bool) -> Report {
        Report {
            checks: CHECKS
                .iter()
                .map(|&(id, name)| Check {
                    id,
                    name,
                    checked: 0,
                    violations: 0,
                    kept: Vec::new(),
                    not_checked: None,
                    notes: Vec::new(),
                })
                .collect(),
            json,
        }
    }

    fn check(&mut self, id: u8) -> &mut Check {
        &mut self.checks[usize::from(id) - 1]
    }

    /// `n` more items examined by check `id`.
    pub fn checked(&mut self, id: u8, n: u64) {
        self.check(id).checked += n;
    }

    pub fn violation(&mut self, id: u8, subject: Subject, detail: impl Into<String>) {
        let detail = detail.into();
        let json = self.json;
        let check = self.check(id);
        check.violations += 1;
        if !json {
            let what = match &subject {
                Subject::Serial(s) => format!("serial {s}"),
                Subject::Order(o) => format!("order {o}"),
                Subject::AllSerials => "all serials".into(),
            };
            println!("check {id} {}: {what}: {detail}", check.name);
        }
        if check.kept.len() < KEPT_PER_CHECK {
            check.kept.push((subject, detail));
        }
    }

    /// Check `id` could not be made, and why (it is reported so, not as a pass).
    pub fn not_checked(&mut self, id: u8, why: impl Into<String>) {
        self.check(id).not_checked = Some(why.into());
    }

    /// A limit of what check `id` could see, shown with its result.
    pub fn note(&mut self, id: u8, text: impl Into<String>) {
        let text = text.into();
        let notes = &mut self.check(id).notes;
        if !notes.contains(&text) {
            notes.push(text);
        }
    }

    pub fn total(&self) -> u64 {
        self.checks.iter().map(|c| c.violations).sum()
    }

    /// The JSON document.
    pub fn to_json(&self) -> Value {
        let checks: Vec<Value> = self
            .checks
            .iter()
            .map(|c| {
                let violations: Vec<Value> = c
                    .kept
                    .iter()
                    .map(|(subject, detail)| match subject {
                        Subject::Serial(s) => json!({"serial": s, "detail": detail}),
                        Subject::Order(o) => json!({"order_id": o, "detail": detail}),
                        Subject::AllSerials => json!({"serial": null, "detail": detail}),
                    })
                    .collect();
                json!({
                    "id": c.id,
                    "name": c.name,
                    "checked": c.checked,
                    "violations": violations,
                    "violation_count": c.violations,
                    "status": status(c),
                    "why_not_checked": c.not_checked,
                    "notes": c.notes,
                })
            })
            .collect();
        json!({"checks": checks, "violations": self.total()})
    }

    /// Prints the summary (text) or the document (`--json`).
    pub fn print(&self, elapsed: std::time::Duration) {
        let mut out = std::io::stdout().lock();
        if self.json {
            let _ = writeln!(out, "{}", self.to_json());
        } else {
            let _ = writeln!(
                out,
                "\n{:>3} {:<32} {:>10} {:>10}  status",
                "#", "check", "checked", "violations"
            );
            for c in &self.checks {
                let _ = writeln!(
                    out,
                    "{:>3} {:<32} {:>10} {:>10}  {}",
                    c.id,
                    c.name,
                    c.checked,
                    c.violations,
                    status(c)
                );
                if let Some(why) = &c.not_checked {
                    let _ = writeln!(out, "      not checked: {why}");
                }
                for note in &c.notes {
                    let _ = writeln!(out, "      note: {note}");
                }
            }
            let _ = writeln!(
                out,
                "{} violation(s); audited in {:.1} s",
                self.total(),
                elapsed.as_secs_f64()
            );
        }
        let _ = out.flush();
    }
}

fn status(c: &Check) -> &'static str {
    match (&c.not_checked, c.violations) {
        (_, n) if n > 0 => "fail",
        (Some(_), _) => "not-checked",
        (None, _) => "pass",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_not_made_is_never_a_pass() {
        let mut report = Report::new(true);
        report.checked(1, 3);
        report.not_checked(7, "no CT log keys");
        report.violation(
            10,
            Subject::Order("o1".into()),
            "valid without a certificate",
        );
        let doc = report.to_json();
        assert_eq!(doc["violations"], 1);
        let checks = doc["checks"].as_array().unwrap();
        assert_eq!(checks.len(), 11);
        assert_eq!(checks[0]["status"], "pass");
        assert_eq!(checks[0]["checked"], 3);
        assert_eq!(checks[9]["status"], "fail");
        assert_eq!(checks[9]["violations"][0]["order_id"], "o1");
        assert_eq!(checks[6]["status"], "not-checked");
        assert_eq!(checks[6]["why_not_checked"], "no CT log keys");
        assert_eq!(checks[10]["status"], "pass", "nothing said of it");
        assert!(checks[0]["why_not_checked"].is_null());
    }
}
