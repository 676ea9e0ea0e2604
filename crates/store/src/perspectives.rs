//! The records of Multi-Perspective Issuance Corroboration (BR 3.2.2.9,
//! 5.4.1): per challenge, which remote perspectives were asked and by
//! when, what each found, and the quorum's verdict — what an audit shows
//! behind every issued certificate.

use crate::db::{Row, Script};
use crate::{Result, Store, stmt};

/// A corroboration under way or decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corroboration {
    pub challenge_id: String,
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
    /// `corroborated`, `disagreed` or `timed-out`.
    pub result: String,
    /// What it saw (bounded), empty when it agreed.
    pub detail: String,
    pub checked_at: i64,
}

impl Store {
    /// Starts the corroboration of a challenge whose primary check passed.
    /// A later attempt (a re-driven validation) starts afresh: results of
    /// an earlier one are never counted again (BR 3.2.2.9).
    pub async fn begin_corroboration(
        &self,
        challenge_id: &str,
        remotes: i64,
        deadline: i64,
        now: i64,
    ) -> Result<()> {
        let script = Script::new()
            .then(stmt!(
                "DELETE FROM perspective_results WHERE challenge_id = $1",
                challenge_id
            ))
            .then(stmt!(
                "DELETE FROM corroborations WHERE challenge_id = $1",
                challenge_id
            ))
            .then(stmt!(
                "INSERT INTO corroborations (challenge_id, remotes, deadline, started_at)
                 VALUES ($1, $2, $3, $4)",
                challenge_id,
                remotes,
                deadline,
                now,
            ));
        self.db.run(script).await?;
        Ok(())
    }

    /// Records one perspective's finding; the first one of a perspective
    /// stands (a redelivered job does not overwrite it). False when the
    /// challenge has no corroboration under way (decided, or never begun).
    pub async fn record_perspective_result(
        &self,
        challenge_id: &str,
        result: &PerspectiveResult,
    ) -> Result<bool> {
        let rows = self
            .db
            .execute(stmt!(
                "INSERT INTO perspective_results
                     (challenge_id, perspective, region, result, detail, checked_at)
                 SELECT $1, $2, $3, $4, $5, $6
                 WHERE EXISTS (SELECT 1 FROM corroborations
                               WHERE challenge_id = $1 AND decided_at IS NULL)
                 ON CONFLICT (challenge_id, perspective) DO NOTHING",
                challenge_id,
                result.perspective.clone(),
                result.region.clone(),
                result.result.clone(),
                result.detail.clone(),
                result.checked_at,
            ))
            .await?;
        Ok(rows == 1)
    }

    /// The challenge's corroboration with every result recorded so far.
    pub async fn corroboration(&self, challenge_id: &str) -> Result<Option<Corroboration>> {
        let Some(row) = self
            .db
            .optional(stmt!(
                "SELECT * FROM corroborations WHERE challenge_id = $1",
                challenge_id
            ))
            .await?
        else {
            return Ok(None);
        };
        let results = self
            .db
            .all(stmt!(
                "SELECT * FROM perspective_results WHERE challenge_id = $1 ORDER BY perspective",
                challenge_id
            ))
            .await?
            .iter()
            .map(PerspectiveResult::from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Corroboration {
            challenge_id: row.text("challenge_id")?,
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
        challenge_id: &str,
        verdict: &str,
        passed: bool,
        now: i64,
    ) -> Result<bool> {
        let rows = self
            .db
            .execute(stmt!(
                "UPDATE corroborations SET verdict = $2, passed = $3, decided_at = $4
                 WHERE challenge_id = $1 AND decided_at IS NULL",
                challenge_id,
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
