//! The stage runner's dead letters, recorded in the database.

use async_trait::async_trait;
use queue::{DeadLetterEntry, DeadLetterLog, Queue, StageIo};
use std::sync::Arc;
use store::{DeadLetterRecord, Store};

/// Records each dead letter as a `dead_letters` row.
pub struct StoreDeadLetters(pub Store);

#[async_trait]
impl DeadLetterLog for StoreDeadLetters {
    async fn record(&self, entry: &DeadLetterEntry<'_>) -> Result<(), String> {
        let record = DeadLetterRecord {
            stage: entry.stage.to_string(),
            job: entry.job_name().to_string(),
            subject_id: entry.job.map(|job| job.subject_id().to_string()),
            attempt: entry.attempt,
            reason: entry.reason.to_string(),
            dead_at: store::now_ms(),
        };
        self.0
            .record_dead_letter(&record)
            .await
            .map_err(|e| e.to_string())
    }
}

/// What a stage runs on: `queue`, with its dead letters recorded in `store`.
pub fn stage_io(queue: Arc<dyn Queue>, store: &Store) -> StageIo {
    StageIo {
        queue,
        dead_letters: Arc::new(StoreDeadLetters(store.clone())),
    }
}
