//! The scorecard and its text and JSON forms (the HTML page is `html`).

use super::evidence::Evidence;
use super::judge::Verdict;
use serde::Serialize;
use std::fmt::Write as _;

/// One scenario's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    pub verdict: Verdict,
    pub required: bool,
    /// What Kiln did, and where that behaviour comes from.
    pub does: String,
    pub source: String,
    /// Why the verdict, in words.
    pub why: String,
    pub evidence: Evidence,
}

impl ScenarioResult {
    /// A scenario that could not be run to the end: FAIL when it is
    /// required (it was not passed), else INFO; the error is its evidence.
    pub fn errored(scenario: &super::scenarios::Scenario, error: String) -> ScenarioResult {
        ScenarioResult {
            name: scenario.name.to_string(),
            verdict: match scenario.required {
                true => Verdict::Fail,
                false => Verdict::Info,
            },
            required: scenario.required,
            does: scenario.does.to_string(),
            source: scenario.source.to_string(),
            why: format!("scenario error: {error}"),
            evidence: Evidence {
                error: Some(error),
                ..Evidence::default()
            },
        }
    }
}

/// Every scenario's outcome for one client.
#[derive(Clone, Debug, Serialize)]
pub struct Scorecard {
    pub client: String,
    /// The command as given, placeholders unfilled.
    pub command: Vec<String>,
    pub kiln_version: String,
    pub scenarios: Vec<ScenarioResult>,
    /// Required scenarios passed and failed; INFO ones count in neither.
    pub passed: usize,
    pub failed: usize,
    pub info: usize,
}

impl Scorecard {
    pub fn new(client: String, command: Vec<String>, scenarios: Vec<ScenarioResult>) -> Self {
        let count = |v| scenarios.iter().filter(|s| s.verdict == v).count();
        Scorecard {
            passed: count(Verdict::Pass),
            failed: count(Verdict::Fail),
            info: count(Verdict::Info),
            client,
            command,
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            scenarios,
        }
    }

    /// Required scenarios whose verdict is INFO: not judged (Kiln's
    /// request log overflowed, or the restart came too late to test).
    pub fn required_unjudged(&self) -> usize {
        self.scenarios
            .iter()
            .filter(|s| s.required && s.verdict == Verdict::Info)
            .count()
    }

    /// Every required scenario passed (an unjudged one did not).
    pub fn all_passed(&self) -> bool {
        self.scenarios
            .iter()
            .all(|s| !s.required || s.verdict == Verdict::Pass)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// One line per scenario, then the summary.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let width = self
            .scenarios
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(0);
        for s in &self.scenarios {
            let _ = writeln!(
                out,
                "{}  {:width$}  {}; {}",
                s.verdict.as_str(),
                s.name,
                s.why,
                evidence_line(&s.evidence)
            );
            if s.verdict == Verdict::Fail
                && let Some(line) = &s.evidence.last_error_line
            {
                let _ = writeln!(out, "      {:width$}  client said: {line}", "");
            }
        }
        let unjudged = match self.required_unjudged() {
            0 => String::new(),
            n => format!(" ({n} required, not judged)"),
        };
        let _ = writeln!(
            out,
            "{}: {} passed, {} failed{}",
            self.client,
            self.passed,
            self.failed,
            if self.info > 0 {
                format!(", {} info{unjudged}", self.info)
            } else {
                String::new()
            }
        );
        out
    }
}

fn secs(ms: i64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// The evidence in a line: exit, time, polls, gaps, retries.
pub fn evidence_line(e: &Evidence) -> String {
    if e.error.is_some() {
        return "no evidence: the scenario did not run to the end".into();
    }
    let mut parts = vec![
        match (e.timed_out, e.exit_code) {
            (true, _) => "killed at the time limit".to_string(),
            (false, Some(code)) => format!("exit {code}"),
            (false, None) => "killed by a signal".to_string(),
        },
        secs(e.took_ms as i64),
        format!("{} requests", e.requests),
        format!("{} finalize", e.finalize_requests),
        format!("{} polls", e.polls),
    ];
    if let Some(gap) = e.shortest_gap_ms {
        parts.push(format!("shortest gap {}", secs(gap)));
    }
    if let Some(rate) = e.poll_rate_per_sec {
        parts.push(format!("{rate}/s while processing"));
    }
    if e.faults_injected > 0 {
        parts.push(format!("{} fault(s)", e.faults_injected));
        if let Some(wait) = e.retry_wait_ms {
            parts.push(format!("retried after {}", secs(wait)));
        }
    }
    if let Some(down) = e.downtime_ms {
        parts.push(format!("down {}", secs(down)));
    }
    if e.requests_dropped > 0 {
        parts.push(format!(
            "{} requests dropped from Kiln's log",
            e.requests_dropped
        ));
    }
    if let Some(asked) = e.renewal_info_requests {
        parts.push(format!("{asked} renewalInfo requests"));
    }
    if let Some(status) = &e.order_status {
        parts.push(format!("order {status}"));
    }
    if e.certificate_downloaded {
        parts.push("certificate downloaded".into());
    }
    parts.join(", ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample() -> Scorecard {
        let result = |name: &str, verdict, required| ScenarioResult {
            name: name.into(),
            verdict,
            required,
            does: "does".into(),
            source: "RFC 8555 §7.4".into(),
            why: "why".into(),
            evidence: Evidence {
                exit_code: Some(1),
                polls: 2,
                shortest_gap_ms: Some(1_500),
                last_error_line: Some("Error: <boom> & \"quoted\"".into()),
                ..Evidence::default()
            },
        };
        Scorecard::new(
            "lego".into(),
            vec!["lego".into(), "run".into()],
            vec![
                result("baseline", Verdict::Pass, true),
                result("stall", Verdict::Fail, true),
                result("profile", Verdict::Info, false),
            ],
        )
    }

    #[test]
    fn text_has_a_line_per_scenario_and_a_summary() {
        let text = sample().to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("PASS  baseline"), "{text}");
        assert!(
            lines[0].contains("exit 1") && lines[0].contains("2 polls"),
            "{text}"
        );
        assert!(lines[0].contains("shortest gap 1.5s"), "{text}");
        assert!(lines[1].starts_with("FAIL  stall"), "{text}");
        assert!(lines[2].contains("client said: Error: <boom>"), "{text}");
        assert!(lines[3].starts_with("INFO  profile"), "{text}");
        assert_eq!(lines[4], "lego: 1 passed, 1 failed, 1 info");
    }

    #[test]
    fn an_errored_or_unjudged_required_scenario_fails_the_run() {
        let scenarios = super::super::scenarios::all();
        let by_name = |n: &str| scenarios.iter().find(|s| s.name == n).unwrap();
        let errored = ScenarioResult::errored(by_name("baseline"), "Kiln did not start".into());
        assert_eq!((errored.verdict, errored.required), (Verdict::Fail, true));
        assert_eq!(
            errored.evidence.error.as_deref(),
            Some("Kiln did not start")
        );
        let optional = ScenarioResult::errored(by_name("profile"), "boom".into());
        assert_eq!(optional.verdict, Verdict::Info);
        let card = |results| Scorecard::new("c".into(), Vec::new(), results);
        let failed = card(vec![errored.clone(), optional.clone()]);
        assert!(!failed.all_passed());
        let text = failed.to_text();
        assert!(
            text.contains("scenario error: Kiln did not start; no evidence"),
            "{text}"
        );
        assert!(card(vec![optional.clone()]).all_passed(), "INFO only");
        let mut unjudged = errored;
        unjudged.verdict = Verdict::Info;
        let card = card(vec![unjudged, optional]);
        assert!(!card.all_passed(), "a required INFO is not a pass");
        assert!(
            card.to_text()
                .ends_with("c: 0 passed, 0 failed, 2 info (1 required, not judged)\n"),
            "{}",
            card.to_text()
        );
    }

    #[test]
    fn json_has_the_documented_shape() {
        let card = sample();
        assert!(!card.all_passed());
        let doc: serde_json::Value = serde_json::from_str(&card.to_json()).unwrap();
        assert_eq!(doc["client"], "lego");
        assert_eq!(
            (doc["passed"].as_u64(), doc["failed"].as_u64()),
            (Some(1), Some(1))
        );
        let first = &doc["scenarios"][0];
        assert_eq!(first["name"], "baseline");
        assert_eq!(first["verdict"], "PASS");
        assert_eq!(first["required"], true);
        assert_eq!(first["evidence"]["polls"], 2);
        assert_eq!(first["evidence"]["exit_code"], 1);
        assert_eq!(doc["scenarios"][2]["verdict"], "INFO");
    }
}
