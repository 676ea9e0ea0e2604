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
            subject_id: entry.job.map(|job| storable(job.subject_id())),
            attempt: entry.attempt,
            reason: storable(entry.reason),
            dead_at: store::now_ms(),
        };
        self.0
            .record_dead_letter(&record)
            .await
            .map_err(|e| e.to_string())
    }
}

/// `text` as PostgreSQL TEXT takes it: a poison message's id or reason may
/// hold NUL, which no order or challenge id does.
fn storable(text: &str) -> String {
    text.replace('\0', "\\0")
}

/// What a stage runs on: `queue`, with its dead letters recorded in `store`.
pub fn stage_io(queue: Arc<dyn Queue>, store: &Store) -> StageIo {
    StageIo {
        queue,
        dead_letters: Arc::new(StoreDeadLetters(store.clone())),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn nul_is_spelled_out() {
        assert_eq!(super::storable("o\0x"), "o\\0x");
        assert_eq!(super::storable("ord_abc"), "ord_abc");
    }
}
