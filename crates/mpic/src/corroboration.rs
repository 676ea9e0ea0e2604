//! Corroboration over the queue: once a primary's check passes (a
//! challenge at the validator, the CAA recheck at the caa-checker), every
//! configured remote perspective (a validator with its own resolver and
//! network, consuming its own queue) repeats it; a tally on the primary's
//! queue decides by [`quorum::decide`] when all have answered or the
//! deadline has passed. Every finding and the verdict are stored under the
//! check's subject.

use crate::quorum::{self, Enforcement, Finding, Outcome, Region};
use domain::{Identifier, Problem, ProblemKind};
use proto::Job;
use queue::{Message, Queue, StageError};
use std::sync::Arc;
use std::time::Duration;
use store::{PerspectiveResult, Store, now_ms};
use tracing::{info, warn};

/// How long the remotes have unless configured: well inside the challenge's
/// own re-drive timeout, and longer than one DNS lookup's retries.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// What a perspective may quote back of what it saw.
const MAX_DETAIL: usize = 300;

/// A remote perspective as the primary knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemotePerspective {
    pub name: String,
    pub region: Option<Region>,
}

impl std::str::FromStr for RemotePerspective {
    type Err = String;
    /// `NAME` or `NAME@REGION`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, region) = match s.split_once('@') {
            Some((name, region)) => (name, Some(region.parse()?)),
            None => (s, None),
        };
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(format!(
                "perspective name {name:?}: 1 to 64 letters, digits, '-' or '_'"
            ));
        }
        Ok(RemotePerspective {
            name: name.to_string(),
            region,
        })
    }
}

/// The primary's side: whom it asks, by when, and what a failed quorum does.
#[derive(Clone)]
pub struct Corroboration {
    pub remotes: Vec<RemotePerspective>,
    pub deadline: Duration,
    pub enforcement: Enforcement,
    /// The two-region rule; off where every perspective is on one machine
    /// and no regions were given.
    region_rule: bool,
    /// For the tally at the deadline (a delayed message).
    pub queue: Arc<dyn Queue>,
}

impl Corroboration {
    /// The two-region rule applies when every remote has a region: always
    /// outside a test deployment ([`crate::MpicConfig::remotes`]); on one
    /// machine only when regions were given.
    pub fn new(
        remotes: Vec<RemotePerspective>,
        deadline: Duration,
        enforcement: Enforcement,
        queue: Arc<dyn Queue>,
    ) -> Self {
        Corroboration {
            region_rule: remotes.iter().all(|r| r.region.is_some()),
            remotes,
            deadline,
            enforcement,
            queue,
        }
    }

    /// Starts the corroboration of `subject` (a check whose primary result
    /// passed): its record, `tally` delayed to the deadline, and `ask`'s job
    /// per remote (returned, for the runner to publish before it acks).
    pub async fn fan_out(
        &self,
        store: &Store,
        subject: &str,
        tally: Job,
        ask: impl Fn(&RemotePerspective) -> Job,
    ) -> Result<Vec<Job>, StageError> {
        let now = now_ms();
        let deadline = now + self.deadline.as_millis() as i64;
        store
            .begin_corroboration(subject, self.remotes.len() as i64, deadline, now)
            .await
            .map_err(StageError::retry)?;
        self.queue
            .publish_delayed(Message::new(tally), self.deadline)
            .await
            .map_err(StageError::retry)?;
        Ok(self.remotes.iter().map(ask).collect())
    }

    /// The verdict once every remote has answered or the deadline passed;
    /// `None` while it is too early, or when another tally decided.
    pub async fn tally(
        &self,
        store: &Store,
        subject: &str,
        identifier: Option<&Identifier>,
    ) -> Result<Option<Result<(), Problem>>, StageError> {
        let Some(record) = store
            .corroboration(subject)
            .await
            .map_err(StageError::retry)?
        else {
            return Ok(None);
        };
        let now = now_ms();
        let answered =
            |r: &RemotePerspective| record.results.iter().find(|x| x.perspective == r.name);
        let all_answered = self.remotes.iter().all(|r| answered(r).is_some());
        if record.verdict.is_some() || (!all_answered && now < record.deadline) {
            return Ok(None);
        }
        // Only the configured remotes count, each with its configured region.
        let outcomes: Vec<Outcome> = self
            .remotes
            .iter()
            .map(|r| Outcome {
                perspective: r.name.clone(),
                region: r.region,
                finding: answered(r).map_or(Finding::TimedOut, finding_of),
            })
            .collect();
        let verdict = quorum::decide(&outcomes, self.region_rule);
        if !store
            .decide_corroboration(subject, &verdict.summary(), verdict.passed(), now)
            .await
            .map_err(StageError::retry)?
        {
            return Ok(None);
        }
        for outcome in &outcomes {
            let result = result_name(&outcome.finding);
            metrics::counter!("kiln_mpic_perspective_results_total",
                "perspective" => outcome.perspective.clone(), "result" => result)
            .increment(1);
        }
        let enforced = self.enforcement == Enforcement::Enforce;
        info!(
            subject,
            quorum = %verdict.summary(),
            passed = verdict.passed(),
            enforced,
            "corroboration decided"
        );
        metrics::counter!("kiln_mpic_verdicts_total",
            "passed" => verdict.passed().to_string(), "enforced" => enforced.to_string())
        .increment(1);
        match &verdict.failure {
            Some(why) if enforced => Ok(Some(Err(refusal(identifier, why, &outcomes)))),
            Some(why) => {
                warn!(
                    subject,
                    why, "corroboration failed; observe-only, not blocking"
                );
                Ok(Some(Ok(())))
            }
            None => Ok(Some(Ok(()))),
        }
    }
}

/// The stored form of a remote's finding.
pub fn record_of(
    perspective: &str,
    region: Option<Region>,
    check: &Result<(), Problem>,
) -> PerspectiveResult {
    let finding = match check {
        Ok(()) => Finding::Corroborated,
        Err(problem) => Finding::Disagreed {
            saw: bounded(&what_it_saw(problem)),
        },
    };
    PerspectiveResult {
        perspective: perspective.to_string(),
        region: region.map(|r| r.as_str().to_string()),
        result: result_name(&finding).to_string(),
        detail: match finding {
            Finding::Disagreed { saw } => saw,
            _ => String::new(),
        },
        checked_at: now_ms(),
    }
}

/// A problem's detail, or its subproblems' when it has them (a compound
/// CAA failure says which record refused each name there).
fn what_it_saw(problem: &Problem) -> String {
    if problem.subproblems.is_empty() {
        return problem.detail.clone();
    }
    problem
        .subproblems
        .iter()
        .map(|p| p.detail.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

fn finding_of(result: &PerspectiveResult) -> Finding {
    match result.result.as_str() {
        // A remote that timed out wrote nothing: only these two are stored.
        "corroborated" => Finding::Corroborated,
        _ => Finding::Disagreed {
            saw: result.detail.clone(),
        },
    }
}

fn result_name(finding: &Finding) -> &'static str {
    match finding {
        Finding::Corroborated => "corroborated",
        Finding::Disagreed { .. } => "disagreed",
        Finding::TimedOut => "timed-out",
    }
}

/// The check's problem: what failed, then one subproblem per remote that
/// did not corroborate, naming it and what it saw.
fn refusal(identifier: Option<&Identifier>, why: &str, outcomes: &[Outcome]) -> Problem {
    let mut problem = Problem::new(
        ProblemKind::Unauthorized,
        format!("multi-perspective corroboration failed (BR 3.2.2.9): {why}"),
    );
    problem.identifier = identifier.cloned();
    problem.subproblems = outcomes
        .iter()
        .filter_map(|o| {
            let saw = match &o.finding {
                Finding::Corroborated => return None,
                Finding::Disagreed { saw } => saw.clone(),
                Finding::TimedOut => "no answer before the deadline".to_string(),
            };
            let region = o
                .region
                .map(|r| format!(" ({})", r.as_str()))
                .unwrap_or_default();
            let mut sub = Problem::new(
                ProblemKind::Unauthorized,
                format!("perspective {}{region}: {saw}", o.perspective),
            );
            sub.identifier = identifier.cloned();
            Some(sub)
        })
        .collect();
    problem
}

fn bounded(text: &str) -> String {
    if text.len() <= MAX_DETAIL {
        return text.to_string();
    }
    let mut end = MAX_DETAIL;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perspective_specs_parse() {
        let p: RemotePerspective = "arin-1@ARIN".parse().unwrap();
        assert_eq!(p.name, "arin-1");
        assert_eq!(p.region, Some(Region::Arin));
        assert_eq!("local".parse::<RemotePerspective>().unwrap().region, None);
        assert!("".parse::<RemotePerspective>().is_err());
        assert!("a b".parse::<RemotePerspective>().is_err());
        assert!("a@MARS".parse::<RemotePerspective>().is_err());
    }

    #[test]
    fn a_refusal_names_each_remote_that_did_not_corroborate() {
        let outcomes = [
            Outcome {
                perspective: "a".into(),
                region: None,
                finding: Finding::Corroborated,
            },
            Outcome {
                perspective: "b".into(),
                region: Some(Region::Ripe),
                finding: Finding::Disagreed {
                    saw: "TXT value x".into(),
                },
            },
            Outcome {
                perspective: "c".into(),
                region: None,
                finding: Finding::TimedOut,
            },
        ];
        let problem = refusal(Some(&Identifier::dns("a.test")), "1 of 3", &outcomes);
        let details: Vec<&str> = problem
            .subproblems
            .iter()
            .map(|p| p.detail.as_str())
            .collect();
        assert_eq!(
            details,
            [
                "perspective b (RIPE): TXT value x",
                "perspective c: no answer before the deadline"
            ]
        );
    }

    #[test]
    fn details_are_bounded() {
        let long = "é".repeat(400);
        assert!(bounded(&long).len() <= MAX_DETAIL + "…".len());
    }
}
