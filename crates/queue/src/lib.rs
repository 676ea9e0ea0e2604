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
mod memory;
mod runner;

pub use amqp::{AmqpOptions, AmqpQueue};
pub use memory::MemoryQueue;
pub use runner::{Handler, RunnerConfig, StageError, run_stage, run_stage_reporting};

use async_trait::async_trait;
use proto::Envelope;
use std::collections::BTreeMap;
use std::time::Duration;

/// A job with its transport headers (W3C trace context travels here).
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub envelope: Envelope,
    pub headers: BTreeMap<String, String>,
}

impl Message {
    pub fn new(job: proto::Job) -> Self {
        Message {
            envelope: Envelope::new(job),
            headers: BTreeMap::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("message was not accepted by the broker: {0}")]
    NotConfirmed(String),
    #[error("queue closed")]
    Closed,
}

/// The broker as a stage sees it.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Returns once the broker has the message durably (publisher confirm).
    async fn publish(&self, message: Message) -> Result<(), QueueError>;
    /// Publishes after `delay` (retry with backoff).
    async fn publish_delayed(&self, message: Message, delay: Duration) -> Result<(), QueueError>;
    /// Starts consuming `queue`, at most `prefetch` unacked deliveries at once.
    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError>;
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

/// The job that does a processing order's current step: what a stage
/// re-emits when a redelivered job finds the order already past it, and
/// what the sweeper sends for an order stuck at a step.
pub fn job_for_step(step: domain::FinalizeStep, order_id: &str) -> proto::Job {
    use domain::FinalizeStep::*;
    let order_id = order_id.to_string();
    match step {
        CheckCaa => proto::Job::CheckCaa { order_id },
        SignPrecert => proto::Job::SignPrecert { order_id },
        SubmitCt => proto::Job::SubmitCt { order_id },
        SignFinal => proto::Job::SignFinal { order_id },
    }
}
