//! Moving jobs between stages, and the one loop every stage runs.
//!
//! `Queue` is the broker seen from a stage: the in-process back end here
//! serves the embedded mode and tests; the AMQP back end serves the
//! distributed mode through the same trait. `run_stage` is the stage runner:
//! it calls the stage's `Handler`, publishes the jobs the handler asks for,
//! and only then acks the input (invariant 4), retrying with backoff and
//! giving the order up after `max_attempts`.

#![forbid(unsafe_code)]

pub mod amqp;
mod dead_log;
mod memory;
mod runner;
pub mod trace;

pub use amqp::{AmqpOptions, AmqpQueue};
pub use dead_log::{DeadLetterEntry, DeadLetterLog, MemoryDeadLetters};
pub use memory::MemoryQueue;
pub use runner::{Handler, RunnerConfig, StageError, StageIo, run_stage, run_stage_reporting};
pub use trace::Propagation;

use async_trait::async_trait;
use proto::Envelope;
use std::collections::BTreeMap;
use std::time::Duration;

/// The header of a dead letter that says why its stage gave up on it
/// (`attempts_exhausted: …`, `permanent: …`).
pub const DEAD_REASON_HEADER: &str = "kiln-dead-reason";
/// The stage that gave up on a dead letter: where it died, which for a job
/// that reached the wrong queue is not the queue its kind routes to.
pub const DEAD_STAGE_HEADER: &str = "kiln-dead-stage";

/// A job with its transport headers (W3C trace context travels here).
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub envelope: Envelope,
    pub headers: BTreeMap<String, String>,
}

impl Message {
    /// This message as given up on by `stage`, before it is published dead.
    pub fn given_up_by(&self, stage: &str) -> Message {
        let mut dying = self.clone();
        dying
            .headers
            .insert(DEAD_STAGE_HEADER.to_string(), stage.to_string());
        dying
    }

    /// This message as a dead letter: the same job, with why.
    pub fn dead(&self, reason: &str) -> Message {
        let mut dead = self.clone();
        dead.headers
            .insert(DEAD_REASON_HEADER.to_string(), reason.to_string());
        dead
    }

    /// A new message for `job`. Created inside a span (the api's request,
    /// a stage's `process` span), it carries that span's W3C trace context
    /// in its headers: the one place context is injected (see [`trace`]).
    pub fn new(job: proto::Job) -> Self {
        let mut headers = BTreeMap::new();
        trace::inject_current(&mut headers);
        Message {
            envelope: Envelope::new(job),
            headers,
        }
    }
}

/// A queue as seen by metrics: messages waiting and consumers attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Ready messages (not counting those delivered and not yet acked).
    pub messages: u64,
    pub consumers: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("message was not accepted by the broker: {0}")]
    NotConfirmed(String),
    #[error("queue closed")]
    Closed,
    /// A dead letter could not be recorded in the database.
    #[error("dead letter not recorded: {0}")]
    NotRecorded(String),
}

/// The broker as a stage sees it.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Returns once the broker has the message durably (publisher confirm).
    async fn publish(&self, message: Message) -> Result<(), QueueError>;
    /// Publishes after `delay` (retry with backoff).
    async fn publish_delayed(&self, message: Message, delay: Duration) -> Result<(), QueueError>;
    /// Puts a job its stage gave up on in `kiln.dead`, with why in the
    /// [`DEAD_REASON_HEADER`] header, for an operator to inspect or replay.
    async fn publish_dead(&self, message: Message, reason: &str) -> Result<(), QueueError>;
    /// Starts consuming `queue`, at most `prefetch` unacked deliveries at once.
    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError>;

    /// `messaging.system` of the spans of jobs from this queue.
    fn system(&self) -> &'static str {
        "in-process"
    }

    /// Depth and consumers of `queue` (a proto name), for the
    /// `kiln_queue_depth` / `kiln_queue_consumers` gauges; `None` if this
    /// back end cannot tell or the broker is unreachable.
    async fn stats(&self, _queue: &str) -> Option<QueueStats> {
        None
    }
}

#[async_trait]
pub trait Consumer: Send {
    /// The next delivery; `None` once the queue is closed.
    async fn next(&mut self) -> Option<Result<Delivery, QueueError>>;
}

/// One received message; ack it once its effects are durable.
pub struct Delivery {
    /// Undecodable bodies arrive as `Err` so the runner can dead-letter them.
    pub message: Result<Message, String>,
    /// Set by the broker when this message was delivered before.
    pub redelivered: bool,
    pub acker: Box<dyn Acker>,
}

#[async_trait]
pub trait Acker: Send + Sync {
    async fn ack(&self) -> Result<(), QueueError>;
    /// Rejects without requeue: the broker dead-letters it.
    async fn reject(&self) -> Result<(), QueueError>;
}
