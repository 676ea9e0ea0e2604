//! The records of Multi-Perspective Issuance Corroboration (BR 3.2.2.9,
//! 5.4.1): per subject (a challenge, or the CAA recheck of an order at
//! finalize, [`caa_recheck_subject`]), which remote perspectives were asked
//! and by when, what each found, and the quorum's verdict — what an audit
//! shows behind every issued certificate.

use crate::db::{Row, Script};
use crate::{Result, Store, stmt};

/// The subject of an order's CAA recheck at finalize; a challenge's is
/// its id.
pub fn caa_recheck_subject(order_id: &str) -> String {
    format!("caa:{order_id}")
}

/// A corroboration under way or decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corroboration {
    pub subject: String,
    /// How many remote perspectives were asked.
    pub remotes: i64,
    /// After this (unix ms) a perspective that has not answered counts as
    /// not corroborating.
    pub deadline: i64,
    pub started_at: i64,
    /// "3/4" once decided.
    pub verdict: Option<String>,
    pub passed: Option<bool>,
    pub results: Vec<PerspectiveResult>,
}

/// What one remote perspective found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PerspectiveResult {
    pub perspective: String,
    pub region: Option<String>,
    /// `corroborated` or `disagreed` (a remote that timed out wrote
    /// nothing).
    pub result: String,
    /// What it saw (bounded), empty when it agreed.
    pub detail: String,
    pub checked_at: i64,
}

impl Store {
    /// Starts the corroboration of a check whose primary result passed.
    /// A later attempt (a re-driven validation) starts afresh: results of
    /// an earlier one are never counted again (BR 3.2.2.9).
    pub async fn begin_corroboration(
        &self,
        subject: &str,
        remotes: i64,
        deadline: i64,
        now: i64,
    ) -> Result<()> {
        let script = Script::new()
            .then(stmt!(
                "DELETE FROM perspective_results WHERE subject = $1",
                subject
            ))
            .then(stmt!(
                "DELETE FROM corroborations WHERE subject = $1",
                subject
            ))
            .then(stmt!(
                "INSERT INTO corroborations (subject, remotes, deadline, started_at)
                 VALUES ($1, $2, $3, $4)",
                subject,
                remotes,
                deadline,
                now,
            ));
        self.db.run(script).await?;
        Ok(())
    }

    /// Records one perspective's finding; the first one of a perspective
    /// stands (a redelivered job does not overwrite it). False when the
    /// subject has no corroboration under way (decided, or never begun).
    pub async fn record_perspective_result(
        &self,
        subject: &str,
        result: &PerspectiveResult,
    ) -> Result<bool> {
        let rows = self
            .db
            .execute(stmt!(
                "INSERT INTO perspective_results
                     (subject, perspective, region, result, detail, checked_at)
                 SELECT $1, $2, $3, $4, $5, $6
                 WHERE EXISTS (SELECT 1 FROM corroborations
                               WHERE subject = $1 AND decided_at IS NULL)
                 ON CONFLICT (subject, perspective) DO NOTHING",
                subject,
                result.perspective.clone(),
                result.region.clone(),
                result.result.clone(),
                result.detail.clone(),
                result.checked_at,
            ))
            .await?;
        Ok(rows == 1)
    }

    /// The subject's corroboration with every result recorded so far.
    pub async fn corroboration(&self, subject: &str) -> Result<Option<Corroboration>> {
        let Some(row) = self
            .db
            .optional(stmt!(
                "SELECT * FROM corroborations WHERE subject = $1",
                subject
            ))
            .await?
        else {
            return Ok(None);
        };
        let results = self
            .db
            .all(stmt!(
                "SELECT * FROM perspective_results WHERE subject = $1 ORDER BY perspective",
                subject
            ))
            .await?
            .iter()
            .map(PerspectiveResult::from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Corroboration {
            subject: row.text("subject")?,
            remotes: row.i64("remotes")?,
            deadline: row.i64("deadline")?,
            started_at: row.i64("started_at")?,
            verdict: row.opt_text("verdict")?,
            passed: row.opt_i64("passed")?.map(|p| p != 0),
            results,
        }))
    }

    /// Records the quorum's verdict once; false if it was already decided
    /// (another tally got there first).
    pub async fn decide_corroboration(
        &self,
        subject: &str,
        verdict: &str,
        passed: bool,
        now: i64,
    ) -> Result<bool> {
        let rows = self
            .db
            .execute(stmt!(
                "UPDATE corroborations SET verdict = $2, passed = $3, decided_at = $4
                 WHERE subject = $1 AND decided_at IS NULL",
                subject,
                verdict,
                i64::from(passed),
                now,
            ))
            .await?;
        Ok(rows == 1)
    }
}

impl PerspectiveResult {
    fn from_row(r: &Row) -> Result<Self> {
        Ok(PerspectiveResult {
            perspective: r.text("perspective")?,
            region: r.opt_text("region")?,
            result: r.text("result")?,
            detail: r.text("detail")?,
            checked_at: r.i64("checked_at")?,
        })
    }
}
