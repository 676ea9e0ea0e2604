//! The stage runner: consume, handle, publish the follow-up jobs, ack.

use crate::{DeadLetterEntry, DeadLetterLog, Delivery, Message, Queue, QueueError};
use async_trait::async_trait;
use proto::Job;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, warn};

/// What the runner does with a job that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A passing failure (DNS timeout, CT log down, database busy): try the
    /// job again after the delay, until the runner's attempt limit.
    #[error("retry in {after:?}: {reason}")]
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// A bug or corrupt state: retrying cannot help. The order is given up.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

impl StageError {
    pub fn retry(reason: impl std::fmt::Display) -> Self {
        StageError::Retry {
            after: None,
            reason: reason.to_string(),
        }
    }
}

/// One stage's logic. `handle` makes its effects durable and returns the
/// jobs to publish next; the runner publishes them and then acks.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// The stage's name for logs and metrics, e.g. "signer".
    fn stage(&self) -> &'static str;

    /// Must be idempotent: a redelivered job whose effect is already stored
    /// re-emits the next job instead of redoing the work (invariant 2).
    async fn handle(&self, job: &Job, attempt: u32) -> Result<Vec<Job>, StageError>;

    /// Called once a job has failed for good: the handler ends the order or
    /// challenge `invalid` with `serverInternal` so nothing waits forever.
    async fn give_up(&self, job: &Job, reason: &str);
}

#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Jobs handled at once by this replica (also the broker prefetch).
    pub concurrency: usize,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            concurrency: 16,
            max_attempts: 8,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
        }
    }
}

impl RunnerConfig {
    /// Exponential backoff: base · 2^(attempt-1), capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        (self.backoff_base * factor).min(self.backoff_max)
    }
}

/// What a stage runs on: the broker, and where dead letters are recorded.
#[derive(Clone)]
pub struct StageIo {
    pub queue: Arc<dyn Queue>,
    pub dead_letters: Arc<dyn DeadLetterLog>,
}

/// Runs `handler` on `queue_name` until `shutdown` is cancelled, then stops
/// taking deliveries and returns once the jobs in hand are finished and acked.
pub async fn run_stage<H: Handler>(
    io: StageIo,
    queue_name: &str,
    handler: Arc<H>,
    config: RunnerConfig,
    shutdown: CancellationToken,
) -> Result<(), QueueError> {
    let consuming = Arc::new(AtomicBool::new(false));
    run_stage_reporting(io, queue_name, handler, config, shutdown, consuming).await
}

/// `run_stage`, setting `consuming` while a consumer is registered (for
/// readiness probes).
pub async fn run_stage_reporting<H: Handler>(
    io: StageIo,
    queue_name: &str,
    handler: Arc<H>,
    config: RunnerConfig,
    shutdown: CancellationToken,
    consuming: Arc<AtomicBool>,
) -> Result<(), QueueError> {
    let prefetch = u16::try_from(config.concurrency).unwrap_or(u16::MAX);
    let mut consumer = io.queue.consume(queue_name, prefetch).await?;
    register_metrics(handler.stage());
    consuming.store(true, Ordering::Release);
    let permits = Arc::new(Semaphore::new(config.concurrency));
    let config = Arc::new(config);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit.expect("semaphore never closed"),
        };
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = consumer.next() => match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(e)) => {
                    warn!(stage = handler.stage(), error = %e, "consume failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                None => break,
            },
        };
        let (io, handler, config) = (io.clone(), handler.clone(), config.clone());
        let queue_name = queue_name.to_string();
        tokio::spawn(async move {
            process(&io, &queue_name, handler.as_ref(), &config, delivery).await;
            drop(permit);
        });
    }
    consuming.store(false, Ordering::Release);
    // Drain: every permit back means every job in hand is done.
    let _ = permits
        .acquire_many(u32::try_from(config.concurrency).unwrap_or(u32::MAX))
        .await;
    Ok(())
}

/// The reasons a job leaves the pipeline for good (`kiln_dead_letters_total`).
const DEAD_LETTER_REASONS: [&str; 3] = ["undecodable", "attempts_exhausted", "permanent"];

/// Creates a stage's retry and dead-letter series at zero, so dashboards
/// and alerts see them before the first failure.
fn register_metrics(stage: &'static str) {
    metrics::counter!("kiln_job_retries_total", "stage" => stage).increment(0);
    metrics::counter!("kiln_dead_letters_unrecorded_total", "stage" => stage).increment(0);
    for reason in DEAD_LETTER_REASONS {
        metrics::counter!("kiln_dead_letters_total", "stage" => stage, "reason" => reason)
            .increment(0);
    }
}

/// A dead letter buried without its database record.
fn unrecorded(stage: &'static str) {
    metrics::counter!("kiln_dead_letters_unrecorded_total", "stage" => stage).increment(1);
}

fn dead_letter(stage: &'static str, reason: &'static str) {
    metrics::counter!("kiln_dead_letters_total", "stage" => stage, "reason" => reason).increment(1);
}

async fn process<H: Handler>(
    io: &StageIo,
    queue_name: &str,
    handler: &H,
    config: &RunnerConfig,
    delivery: Delivery,
) {
    let queue = io.queue.as_ref();
    let Delivery { message, acker, .. } = delivery;
    let message = match message {
        Ok(message) => message,
        Err(why) => {
            error!(stage = handler.stage(), %why, "undecodable message dead-lettered");
            dead_letter(handler.stage(), "undecodable");
            let reason = format!("undecodable: {why}");
            let entry = DeadLetterEntry {
                stage: handler.stage(),
                job: None,
                attempt: 1,
                reason: &reason,
            };
            // Nothing can come back for a body no build reads: the broker
            // keeps it (rejected into kiln.dead) even if the record fails.
            if let Err(e) = io.dead_letters.record(&entry).await {
                error!(error = %e, "the undecodable message's dead letter was not recorded");
                unrecorded(handler.stage());
            }
            let _ = acker.reject().await;
            return;
        }
    };
    let job = message.envelope.job.clone();
    let attempt = message.envelope.attempt;
    let span = crate::trace::process_span(
        handler.stage(),
        queue.system(),
        queue_name,
        &job,
        attempt,
        &message.headers,
    );
    let outcome_span = span.clone();
    async {
        let started = Instant::now();
        let outcome = handler.handle(&job, attempt).await;
        let label = match &outcome {
            Ok(_) => "ok",
            Err(StageError::Retry { .. }) if attempt < config.max_attempts => "retry",
            Err(_) => "gave_up",
        };
        let stage = handler.stage();
        metrics::counter!("kiln_jobs_total", "stage" => stage, "job" => job.name(), "outcome" => label)
            .increment(1);
        metrics::histogram!("kiln_job_duration_seconds", "stage" => stage, "job" => job.name())
            .record(started.elapsed().as_secs_f64());
        if label != "ok" {
            outcome_span.record("otel.status_code", "error");
        }
        let published = match outcome {
            Ok(next) => publish_all(queue, &message, next).await,
            Err(StageError::Retry { after, reason }) if attempt < config.max_attempts => {
                let delay = after.unwrap_or_else(|| config.backoff(attempt));
                metrics::counter!("kiln_job_retries_total", "stage" => stage).increment(1);
                warn!(%reason, ?delay, "job will be retried");
                let mut again = message.clone();
                again.envelope.attempt = attempt + 1;
                queue.publish_delayed(again, delay).await
            }
            Err(StageError::Retry { reason, .. }) => {
                error!(%reason, "attempts exhausted; giving up");
                let grave = Grave::new("attempts_exhausted", &reason);
                bury(io, handler, config, &message, grave).await
            }
            Err(StageError::Permanent(reason)) => {
                error!(%reason, "permanent failure; giving up");
                let grave = Grave::new("permanent", &reason);
                bury(io, handler, config, &message, grave).await
            }
        };
        match published {
            // The effect is stored and the next job is with the broker.
            Ok(()) => {
                if let Err(e) = acker.ack().await {
                    warn!(error = %e, "ack failed; the job will be redelivered");
                }
            }
            // The effect is stored but its follow-up was not accepted. Put
            // the input back (delayed) so the idempotent handler re-emits the
            // follow-up; if even that fails the connection is gone, and the
            // unacked input is redelivered when it comes back.
            Err(e) => {
                warn!(error = %e, "publishing the next job failed; retrying the input later");
                let mut again = message.clone();
                again.envelope.attempt = attempt + 1;
                if queue.publish_delayed(again, config.backoff(attempt)).await.is_ok() {
                    let _ = acker.ack().await;
                }
            }
        }
    }
    .instrument(span)
    .await
}

/// Comebacks past the attempt limit for a dead letter the database will
/// not record (down for minutes, or a schema without `dead_letters`):
/// then it is buried unrecorded rather than handled again for ever.
const UNRECORDED_COMEBACKS: u32 = 3;

/// Why a job is given up: the metric's reason and the stage's words.
struct Grave<'a> {
    kind: &'static str,
    reason: &'a str,
    why: String,
}

impl<'a> Grave<'a> {
    fn new(kind: &'static str, reason: &'a str) -> Self {
        Grave {
            kind,
            reason,
            why: format!("{kind}: {reason}"),
        }
    }
}

/// Gives a job up for good: its dead letter is recorded in the database,
/// the stage ends its order, and the job itself goes to `kiln.dead` with
/// why, so that the dead-letter count describes messages that exist and
/// the audit can account for them. Should the record or the publish fail,
/// the input comes back (in `process`) and is handled again, which ends in
/// another give-up, or in nothing once the order has been ended; a record
/// still refused [`UNRECORDED_COMEBACKS`] times past the attempt limit is
/// skipped, with an error and `kiln_dead_letters_unrecorded_total`.
async fn bury<H: Handler>(
    io: &StageIo,
    handler: &H,
    config: &RunnerConfig,
    message: &Message,
    grave: Grave<'_>,
) -> Result<(), QueueError> {
    let stage = handler.stage();
    let job = &message.envelope.job;
    let attempt = message.envelope.attempt;
    let entry = DeadLetterEntry {
        stage,
        job: Some(job),
        attempt,
        reason: &grave.why,
    };
    if let Err(e) = io.dead_letters.record(&entry).await {
        if attempt < config.max_attempts.saturating_add(UNRECORDED_COMEBACKS) {
            return Err(QueueError::NotRecorded(e));
        }
        error!(error = %e, "the dead letter cannot be recorded; burying it unrecorded");
        unrecorded(stage);
    }
    handler.give_up(job, grave.reason).await;
    io.queue
        .publish_dead(message.given_up_by(stage), &grave.why)
        .await?;
    dead_letter(stage, grave.kind);
    Ok(())
}

async fn publish_all(queue: &dyn Queue, input: &Message, next: Vec<Job>) -> Result<(), QueueError> {
    for job in next {
        // Created inside this job's `process` span, the message carries its
        // trace context (`Message::new`); other headers of the input follow
        // the order from stage to stage, and so does the input's trace
        // context when tracing is off here.
        let mut message = Message::new(job);
        let injected = message.headers.contains_key("traceparent");
        for (key, value) in &input.headers {
            let trace_header = key == "traceparent" || key == "tracestate";
            if !(injected && trace_header) {
                message
                    .headers
                    .entry(key.clone())
                    .or_insert_with(|| value.clone());
            }
        }
        queue.publish(message).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryDeadLetters, MemoryQueue};
    use std::sync::Mutex;

    /// Fails `fail_times` times, then passes the order on to the signer.
    struct Flaky {
        fail_times: u32,
        calls: Mutex<Vec<u32>>,
        gave_up: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Handler for Flaky {
        fn stage(&self) -> &'static str {
            "test"
        }
        async fn handle(&self, job: &Job, attempt: u32) -> Result<Vec<Job>, StageError> {
            self.calls.lock().unwrap().push(attempt);
            if attempt <= self.fail_times {
                return Err(StageError::retry("flaky"));
            }
            Ok(vec![Job::SignPrecert {
                order_id: job.subject_id().to_string(),
            }])
        }
        async fn give_up(&self, job: &Job, _reason: &str) {
            self.gave_up
                .lock()
                .unwrap()
                .push(job.subject_id().to_string());
        }
    }

    struct Running {
        handler: Arc<Flaky>,
        queue: MemoryQueue,
        ledger: Arc<MemoryDeadLetters>,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<Result<(), QueueError>>,
    }

    /// A runner on the caa-checker queue with one `CheckCaa` job in it.
    async fn start(fail_times: u32, max_attempts: u32, ledger: Arc<MemoryDeadLetters>) -> Running {
        let queue = MemoryQueue::new();
        let handler = Arc::new(Flaky {
            fail_times,
            calls: Mutex::default(),
            gave_up: Mutex::default(),
        });
        let shutdown = CancellationToken::new();
        let config = RunnerConfig {
            concurrency: 2,
            max_attempts,
            backoff_base: Duration::from_millis(1),
            backoff_max: Duration::from_millis(5),
        };
        let io = StageIo {
            queue: Arc::new(queue.clone()),
            dead_letters: ledger.clone(),
        };
        let task = tokio::spawn(run_stage(
            io,
            proto::queues::CAA_CHECKER,
            handler.clone(),
            config,
            shutdown.clone(),
        ));
        queue
            .publish(Message::new(Job::CheckCaa {
                order_id: "o1".into(),
            }))
            .await
            .unwrap();
        Running {
            handler,
            queue,
            ledger,
            shutdown,
            task,
        }
    }

    /// Waits (up to 1 s) until `done` holds.
    async fn until(done: impl Fn() -> bool) {
        for _ in 0..200 {
            if done() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn run(
        fail_times: u32,
        max_attempts: u32,
    ) -> (Arc<Flaky>, MemoryQueue, Arc<MemoryDeadLetters>) {
        let r = start(fail_times, max_attempts, Arc::default()).await;
        until(|| {
            r.queue.depth(proto::queues::SIGNER) == 1
                || !r.handler.gave_up.lock().unwrap().is_empty()
        })
        .await;
        r.shutdown.cancel();
        r.task.await.unwrap().unwrap();
        (r.handler, r.queue, r.ledger)
    }

    #[tokio::test]
    async fn retries_then_publishes_the_next_job() {
        let (handler, queue, ledger) = run(2, 5).await;
        assert_eq!(*handler.calls.lock().unwrap(), vec![1, 2, 3]);
        assert_eq!(queue.depth(proto::queues::SIGNER), 1);
        assert!(handler.gave_up.lock().unwrap().is_empty());
        assert!(ledger.entries().is_empty(), "nothing died");
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts() {
        let (handler, queue, ledger) = run(10, 3).await;
        assert_eq!(*handler.calls.lock().unwrap(), vec![1, 2, 3]);
        assert_eq!(*handler.gave_up.lock().unwrap(), vec!["o1".to_string()]);
        assert_eq!(
            ledger.entries(),
            vec![(
                "test".to_string(),
                "check-caa".to_string(),
                Some("o1".to_string()),
                3,
                "attempts_exhausted: flaky".to_string()
            )],
            "the dead letter is recorded, with why"
        );
        assert_eq!(queue.depth(proto::queues::SIGNER), 0);
        // The job itself is in kiln.dead, saying why.
        let mut dead = queue.consume(proto::queues::DEAD, 1).await.unwrap();
        let buried = dead.next().await.unwrap().unwrap().message.unwrap();
        assert_eq!(buried.envelope.job.subject_id(), "o1");
        assert_eq!(
            buried
                .headers
                .get(crate::DEAD_REASON_HEADER)
                .map(String::as_str),
            Some("attempts_exhausted: flaky")
        );
        assert_eq!(
            buried
                .headers
                .get(crate::DEAD_STAGE_HEADER)
                .map(String::as_str),
            Some("test"),
            "the stage that gave up"
        );
    }

    /// A dead letter the database cannot record is neither buried nor
    /// acked: the input comes back and is given up on again, until the
    /// record succeeds; so no message is in kiln.dead without its record.
    #[tokio::test]
    async fn a_dead_letter_not_recorded_comes_back() {
        let ledger = Arc::new(MemoryDeadLetters::default());
        ledger.refuse_next(2);
        let r = start(u32::MAX, 2, ledger.clone()).await;
        until(|| r.queue.depth(proto::queues::DEAD) == 1).await;
        assert_eq!(r.queue.depth(proto::queues::DEAD), 1);
        assert_eq!(
            *r.handler.calls.lock().unwrap(),
            vec![1, 2, 3, 4],
            "given up at 2, 3 (refused) and 4"
        );
        assert_eq!(*r.handler.gave_up.lock().unwrap(), vec!["o1".to_string()]);
        let recorded = ledger.entries();
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        assert_eq!(recorded[0].3, 4, "recorded on the attempt that buried it");
        r.shutdown.cancel();
        r.task.await.unwrap().unwrap();
    }

    /// A record refused for good (a database down for minutes) does not
    /// keep the job coming back for ever: past the attempt limit plus
    /// `UNRECORDED_COMEBACKS` it is buried unrecorded.
    #[tokio::test]
    async fn a_dead_letter_never_recorded_is_buried_after_a_few_comebacks() {
        let ledger = Arc::new(MemoryDeadLetters::default());
        ledger.refuse_next(usize::MAX);
        let r = start(u32::MAX, 2, ledger.clone()).await;
        until(|| r.queue.depth(proto::queues::DEAD) == 1).await;
        assert_eq!(r.queue.depth(proto::queues::DEAD), 1);
        assert_eq!(*r.handler.calls.lock().unwrap(), vec![1, 2, 3, 4, 5]);
        assert_eq!(*r.handler.gave_up.lock().unwrap(), vec!["o1".to_string()]);
        assert!(ledger.entries().is_empty());
        r.shutdown.cancel();
        r.task.await.unwrap().unwrap();
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let c = RunnerConfig {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..RunnerConfig::default()
        };
        assert_eq!(c.backoff(1), Duration::from_millis(100));
        assert_eq!(c.backoff(3), Duration::from_millis(400));
        assert_eq!(c.backoff(30), Duration::from_secs(1));
    }
}
