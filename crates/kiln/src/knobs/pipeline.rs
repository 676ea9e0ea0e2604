//! The knobs' seams in the pipeline: the queue the api publishes to, which
//! holds back an order's first job by the finalize delay, and the stage
//! decorator that injects failures, stalls, or waits for K polls.

use super::state::KnobState;
use super::values::{FinalizeDelay, InjectedFailure};
use async_trait::async_trait;
use domain::{Problem, ProblemKind};
use proto::Job;
use queue::{Consumer, Handler, MemoryQueue, Message, Queue, QueueError, StageError};
use std::sync::Arc;
use std::time::Duration;
use store::Store;

/// `*` matches any run of characters.
fn matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if name.len() < first.len() + last.len() || !name.starts_with(first) || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

/// The queue the api publishes to: holds back an order's first pipeline
/// job by the finalize delay, so the order really is `processing` that long.
pub struct DelayingQueue {
    pub inner: MemoryQueue,
    pub knobs: Arc<KnobState>,
    pub store: Store,
}

impl DelayingQueue {
    async fn delay_for(&self, job: &Job) -> Option<Duration> {
        let Job::CheckCaa { order_id } = job else {
            return None;
        };
        let delay = self.knobs.sample_delay()?;
        if let Some(pattern) = self.knobs.get().delay_pattern {
            let order = self.store.order(order_id).await.ok()??;
            if !order
                .identifiers
                .iter()
                .any(|i| matches(&pattern, &i.value))
            {
                return None;
            }
        }
        Some(delay)
    }
}

#[async_trait]
impl Queue for DelayingQueue {
    async fn publish(&self, message: Message) -> Result<(), QueueError> {
        match self.delay_for(&message.envelope.job).await {
            Some(delay) => self.inner.publish_delayed(message, delay).await,
            None => self.inner.publish(message).await,
        }
    }

    async fn publish_delayed(&self, message: Message, delay: Duration) -> Result<(), QueueError> {
        self.inner.publish_delayed(message, delay).await
    }

    async fn publish_dead(&self, message: Message, reason: &str) -> Result<(), QueueError> {
        self.inner.publish_dead(message, reason).await
    }

    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        self.inner.consume(queue, prefetch).await
    }
}

/// A stage with injected failures: the order ends `invalid` with the
/// problem that stage would report, or (stall) never moves on; and the last
/// step waits for K polls when the finalize delay is `polls:K`.
pub struct Faulty<H> {
    pub inner: H,
    pub knobs: Arc<KnobState>,
    pub store: Store,
    pub queue: MemoryQueue,
}

fn injected(failure: InjectedFailure, job: &Job) -> Option<Problem> {
    let problem = |kind, what: &str| Some(Problem::new(kind, format!("injected failure: {what}")));
    match (failure, job) {
        (InjectedFailure::Caa, Job::CheckCaa { .. }) => {
            problem(ProblemKind::Caa, "CAA records forbid issuance")
        }
        (InjectedFailure::Precert, Job::SignPrecert { .. }) => problem(
            ProblemKind::ServerInternal,
            "signing the precertificate failed",
        ),
        (InjectedFailure::Ct, Job::SubmitCt { .. }) => problem(
            ProblemKind::ServerInternal,
            "Certificate Transparency logs are unavailable",
        ),
        (InjectedFailure::Final, Job::SignFinal { .. }) => problem(
            ProblemKind::ServerInternal,
            "signing the final certificate failed",
        ),
        _ => None,
    }
}

#[async_trait]
impl<H: Handler> Handler for Faulty<H> {
    fn stage(&self) -> &'static str {
        self.inner.stage()
    }

    async fn handle(&self, job: &Job, attempt: u32) -> Result<Vec<Job>, StageError> {
        let knobs = self.knobs.get();
        match knobs.fail {
            Some(InjectedFailure::Stall) if matches!(job, Job::CheckCaa { .. }) => {
                return Ok(vec![]);
            }
            Some(failure) => {
                if let Some(problem) = injected(failure, job) {
                    self.store
                        .fail_order(job.subject_id(), &problem)
                        .await
                        .map_err(StageError::retry)?;
                    return Ok(vec![]);
                }
            }
            None => {}
        }
        if let (FinalizeDelay::Polls(k), Job::SignFinal { order_id }) = (knobs.finalize_delay, job)
        {
            let polls = self
                .store
                .polls_after_finalize(order_id)
                .await
                .map_err(StageError::retry)?;
            if polls < i64::from(k) {
                // Not yet: look again shortly, without spending an attempt.
                let again = Message::new(job.clone());
                self.queue
                    .publish_delayed(again, Duration::from_millis(100))
                    .await
                    .map_err(StageError::retry)?;
                return Ok(vec![]);
            }
        }
        self.inner.handle(job, attempt).await
    }

    async fn give_up(&self, job: &Job, reason: &str) {
        self.inner.give_up(job, reason).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_patterns_match_any_run_of_characters() {
        assert!(matches("*.slow.test", "a.slow.test") && !matches("*.slow.test", "slow.test.x"));
    }
}
