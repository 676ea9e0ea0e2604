//! Where the stage runner records each message it dead-letters, before the
//! message goes to `kiln.dead` and before its delivery is acked: the
//! broker's dead letters can be purged, replayed or lost with a node, and
//! the audit must still be able to tell a given-up message from one that
//! vanished. The store implements it (see `service::StoreDeadLetters`).

use async_trait::async_trait;
use proto::Job;

/// One message the runner is about to dead-letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterEntry<'a> {
    /// The stage that gave up on it.
    pub stage: &'static str,
    /// `None`: the body could not be decoded.
    pub job: Option<&'a Job>,
    pub attempt: u32,
    /// Why, as in its [`crate::DEAD_REASON_HEADER`].
    pub reason: &'a str,
}

impl DeadLetterEntry<'_> {
    /// The job's kind, or `undecodable`.
    pub fn job_name(&self) -> &'static str {
        self.job.map_or("undecodable", Job::name)
    }
}

#[async_trait]
pub trait DeadLetterLog: Send + Sync + 'static {
    /// Records `entry` durably; an error means it is not recorded.
    async fn record(&self, entry: &DeadLetterEntry<'_>) -> Result<(), String>;
}

/// One recorded dead letter: stage, job kind, subject, attempt, reason.
pub type RecordedDeadLetter = (String, String, Option<String>, u32, String);

/// Dead letters kept in memory, for tests of a stage on its own; it can be
/// told to refuse records, as a database that is down would.
#[derive(Default)]
pub struct MemoryDeadLetters {
    entries: std::sync::Mutex<Vec<RecordedDeadLetter>>,
    refusals_left: std::sync::atomic::AtomicUsize,
}

impl MemoryDeadLetters {
    pub fn entries(&self) -> Vec<RecordedDeadLetter> {
        self.entries.lock().expect("not poisoned").clone()
    }

    /// The next `n` records fail (`usize::MAX`: every one).
    pub fn refuse_next(&self, n: usize) {
        use std::sync::atomic::Ordering;
        self.refusals_left.store(n, Ordering::SeqCst);
    }
}

#[async_trait]
impl DeadLetterLog for MemoryDeadLetters {
    async fn record(&self, entry: &DeadLetterEntry<'_>) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        let refused = self
            .refusals_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if refused.is_ok() {
            return Err("refused (as told)".into());
        }
        self.entries.lock().expect("not poisoned").push((
            entry.stage.to_string(),
            entry.job_name().to_string(),
            entry.job.map(|job| job.subject_id().to_string()),
            entry.attempt,
            entry.reason.to_string(),
        ));
        Ok(())
    }
}
