//! Dead letters as the database knows them: one row per message a stage
//! gave up on or could not read, written by the stage runner before the
//! message goes to `kiln.dead` and before its delivery is acked, so a
//! given-up message is never only in the broker (or, if the broker lost
//! it, nowhere). `kiln audit` accounts dead letters by these rows.

use crate::db::Row;
use crate::{Result, Store, stmt};

/// One dead-lettered message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterRecord {
    /// The stage that gave up on it.
    pub stage: String,
    /// The job's kind (`proto::Job::name`), or `undecodable`.
    pub job: String,
    /// The order or challenge the job names; `None` when undecodable.
    pub subject_id: Option<String>,
    pub attempt: u32,
    /// Why, as in the dead letter's `kiln-dead-reason` header.
    pub reason: String,
    pub dead_at: i64,
}

impl DeadLetterRecord {
    pub(crate) fn from_row(row: &Row) -> Result<Self> {
        Ok(DeadLetterRecord {
            stage: row.text("stage")?,
            job: row.text("job")?,
            subject_id: row.opt_text("subject_id")?,
            attempt: u32::try_from(row.i64("attempt")?).unwrap_or(u32::MAX),
            reason: row.text("reason")?,
            dead_at: row.i64("dead_at")?,
        })
    }
}

impl Store {
    pub async fn record_dead_letter(&self, letter: &DeadLetterRecord) -> Result<()> {
        self.db
            .execute(stmt!(
                "INSERT INTO dead_letters (stage, job, subject_id, attempt, reason, dead_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                letter.stage.as_str(),
                letter.job.as_str(),
                letter.subject_id.as_deref(),
                i64::from(letter.attempt),
                letter.reason.as_str(),
                letter.dead_at,
            ))
            .await?;
        Ok(())
    }

    /// The dead letters naming `subject_id`, oldest first.
    pub async fn dead_letters_of(&self, subject_id: &str) -> Result<Vec<DeadLetterRecord>> {
        self.db
            .all(stmt!(
                "SELECT * FROM dead_letters WHERE subject_id = $1 ORDER BY id",
                subject_id
            ))
            .await?
            .iter()
            .map(DeadLetterRecord::from_row)
            .collect()
    }
}
