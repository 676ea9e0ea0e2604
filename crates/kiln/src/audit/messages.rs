//! Check 11, message accounting. Every message the pipeline publishes is
//! owed by a transition: the one that moved an order into a step (or a
//! challenge into `processing`) stored, in the same transaction, the step
//! and its deadline. That row is the outbox, one slot per order (invariant
//! 1: the database is the truth, a message carries only ids), so each
//! message is accounted for by the state it acts on:
//!
//! - applied: the order left the step (the step's time is set:
//!   `caa_checked_at`, `precert_at`, `scts_at`, `completed_at`), or the
//!   challenge was decided;
//! - dead-lettered: a `dead_letters` row names it, written by the stage
//!   runner before the message goes to `kiln.dead` and before its ack;
//! - in flight: the order is still at the step, before the step deadline
//!   (past it, the sweeper re-drives the step and sets a new deadline).
//!
//! A message that is none of these is lost: its order or challenge waits
//! past the deadline and nothing re-drove it, or it was given up (dead
//! letter recorded) without its order being ended. A running sweeper
//! re-drives a step whose message vanished, so on a live system the check
//! finds a sweeper that is not doing so, and give-ups that did not end
//! their order; a message lost and re-driven in time leaves no trace.

use super::report::Subject;
use super::scan::Audit;
use store::DeadLetterRecord;
use store::audit::{AuditChallenge, AuditOrder};

/// Overdue challenges listed at most.
pub const OVERDUE_CHALLENGES_LISTED: i64 = 1000;

/// What the accounting found, for the summary note.
#[derive(Debug, Default)]
pub struct Accounts {
    pub applied: u64,
    pub in_flight: u64,
    pub dead_lettered: u64,
}

/// The stage that gives a step's message up (ending the order when it
/// does), and the jobs that message may be: a stray job of another kind,
/// or a remote perspective's corroboration, is not the step's message.
fn owed_by_step(step: &str) -> Option<(&'static str, &'static [&'static str])> {
    Some(match step {
        "check-caa" => ("caa-checker", &["check-caa", "tally-caa"]),
        "sign-precert" => ("signer", &["sign-precert"]),
        "submit-ct" => ("ct-submitter", &["submit-ct"]),
        "sign-final" => ("signer", &["sign-final"]),
        _ => return None,
    })
}

/// The newest dead letter in which `stage` buried one of `jobs`.
fn burial<'a>(
    dead: &'a [DeadLetterRecord],
    stage: &str,
    jobs: &[&str],
) -> Option<&'a DeadLetterRecord> {
    dead.iter()
        .rfind(|d| d.stage == stage && jobs.contains(&d.job.as_str()))
}

impl Audit {
    /// The messages of one order's finalization.
    pub(super) fn order_messages(&mut self, order: &AuditOrder, dead: &[DeadLetterRecord]) {
        if order.processing_since.is_none() {
            return; // never finalized: no message was owed
        }
        self.report.checked(11, 1);
        let steps_passed = [
            order.caa_checked_at,
            order.precert_at,
            order.scts_at,
            order.completed_at,
        ];
        self.accounts.applied += steps_passed.iter().flatten().count() as u64;
        self.accounts.dead_lettered += dead.len() as u64;
        if order.status != "processing" {
            return;
        }
        let step = order.step.as_deref().unwrap_or("none");
        let (now, grace) = (self.settings.now, self.settings.deadline_grace_ms);
        let buried = owed_by_step(step).and_then(|(stage, jobs)| burial(dead, stage, jobs));
        let overdue = match order.step_deadline {
            None => Some("with no step deadline, which the sweeper cannot re-drive".to_string()),
            Some(deadline) if deadline + grace < now => Some(format!(
                "{} s past the step's deadline, not re-driven (is the sweeper running?)",
                (now - deadline) / 1000
            )),
            Some(_) => None,
        };
        let detail = match (buried, overdue) {
            (Some(d), _) if d.dead_at + grace < now => format!(
                "its {step} message was dead-lettered by {} ({}) {} s ago without the order \
                 being ended: still processing at step {step}",
                d.stage,
                d.reason,
                (now - d.dead_at) / 1000
            ),
            (_, Some(overdue)) => format!(
                "its {step} message is neither applied nor dead-lettered: processing at step \
                 {step} {overdue}"
            ),
            (_, None) => {
                self.accounts.in_flight += 1;
                return;
            }
        };
        self.report
            .violation(11, Subject::Order(order.id.clone()), detail);
    }

    /// A challenge whose validation message is overdue (see
    /// `store::Store::audit_overdue_challenges`), with its dead letters.
    fn overdue_challenge(&mut self, challenge: &AuditChallenge, dead: &[DeadLetterRecord]) {
        let when = match challenge.deadline {
            Some(deadline) => format!(
                "{} s past its deadline",
                (self.settings.now - deadline) / 1000
            ),
            None => "with no deadline".to_string(),
        };
        let validation = ["validate-challenge", "tally-corroboration"];
        let fate = match burial(dead, "validator", &validation) {
            Some(d) => format!(
                "was dead-lettered by {} ({}) without the challenge being ended",
                d.stage, d.reason
            ),
            None => "is neither applied nor dead-lettered, and nothing re-drove it (is the \
                     sweeper running?)"
                .to_string(),
        };
        self.report.violation(
            11,
            Subject::Order(challenge.order_id.clone()),
            format!(
                "challenge {} is processing {when}: its validation message {fate}",
                challenge.id
            ),
        );
    }

    /// The overdue challenges, the totals, and what the accounting cannot
    /// see.
    pub(super) async fn message_summary(&mut self) -> anyhow::Result<()> {
        let before = self.settings.now - self.settings.deadline_grace_ms;
        let overdue = self
            .store
            .audit_overdue_challenges(before, OVERDUE_CHALLENGES_LISTED)
            .await?;
        if overdue.len() as i64 == OVERDUE_CHALLENGES_LISTED {
            self.report.note(
                11,
                format!("only the first {OVERDUE_CHALLENGES_LISTED} overdue challenges are listed"),
            );
        }
        for challenge in &overdue {
            let dead = self.store.dead_letters_of(&challenge.id).await?;
            self.overdue_challenge(challenge, &dead);
        }
        let (recorded, naming_nothing) = self
            .store
            .audit_dead_letter_counts(self.settings.since)
            .await?;
        let a = &self.accounts;
        let summary = format!(
            "finalization messages: {} applied, {} in flight, {} dead-lettered; {recorded} dead \
             letters recorded in all, {naming_nothing} naming no order or challenge (poison or \
             undecodable messages)",
            a.applied, a.in_flight, a.dead_lettered
        );
        self.report.note(11, summary);
        self.report.note(
            11,
            "submit-final (logging the issued certificate, best effort) changes no state: it is \
             accounted for only if dead-lettered; challenges are checked only while processing; \
             a message lost and re-driven by the sweeper in time leaves no trace",
        );
        Ok(())
    }
}
