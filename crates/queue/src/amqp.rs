//! The RabbitMQ back end (distributed mode), on lapin.
//!
//! # Topology
//!
//! Declared idempotently on every (re)connection, every argument explicit, so
//! a fresh broker or one that lost its data gets the whole topology back.
//! Names are the proto names behind [`AmqpOptions::prefix`] ("" in production):
//!
//! - `kiln`: durable direct exchange; each stage queue is bound to it with its
//!   own name as the binding key, so a job is published with routing key =
//!   its stage queue.
//! - `kiln.validator`, `kiln.caa-checker`, …: durable quorum queues with a
//!   delivery limit (a poison message that keeps crashing workers ends up dead
//!   instead of looping forever) and dead-lettering to `kiln.dlx`,
//!   at-least-once (RabbitMQ ≥ 3.10; it needs `x-overflow: reject-publish`).
//! - `kiln.dlx` (fanout) → `kiln.dead` (quorum): every dead letter, whatever
//!   its stage; the original routing key tells which stage it came from.
//! - per retry step `kiln.retry.<ms>`: a fanout exchange and a classic queue
//!   with `x-message-ttl: <ms>` that dead-letters to `kiln`. Dead-lettering
//!   keeps the routing key the message was published with (its stage queue),
//!   so an expired message lands back in its stage queue. One queue per
//!   step because TTL only expires messages at the head of a queue.
//!
//! # Reconnection
//!
//! One connection is shared by the publisher and the consumers; whoever first
//! finds it dead opens a new one (one at a time, behind a lock) and
//! redeclares the topology. Publishing retries with backoff on a fresh
//! confirm channel until `publish_timeout`. Each consumer owns a channel; when
//! its stream fails it subscribes again on the current connection. Deliveries
//! unacked on a dead channel are redelivered by the broker, and acking them
//! fails — which is fine because handlers are idempotent (invariant 2).
//!
//! # Layout
//!
//! This file holds the options, the `AmqpQueue` handle and its `Queue`
//! implementation; `topology` names and declares exchanges and queues,
//! `connection` keeps the shared connection (and the backoff), `publish`
//! publishes with confirms, `consume` consumes and acks, `headers`
//! turns a message into AMQP properties and headers and back, and
//! `dead_letters` reads and replays `kiln.dead` for an operator.

mod connection;
mod consume;
mod dead_letters;
mod headers;
mod publish;
mod topology;

pub use dead_letters::{DeadLetter, Replayed};
pub use topology::{DEAD_LETTER_EXCHANGE, EXCHANGE, RetryStep, Topology};

use crate::{Consumer, Message, Queue, QueueError, QueueStats};
use async_trait::async_trait;
use connection::Broker;
use consume::AmqpConsumer;
use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::{FieldTable, ShortString};
use std::sync::Arc;
use std::time::Duration;

const REPLY_SUCCESS: u16 = 200;

#[derive(Clone, Debug)]
pub struct AmqpOptions {
    /// Prepended to every exchange and queue name. "" in production (names
    /// exactly as in `proto`); tests use a unique prefix each.
    pub prefix: String,
    /// Prefetch for `consume(queue, 0)`; AMQP's 0 would mean "unlimited".
    pub prefetch: u16,
    /// Returns of one message (nack with requeue, or its consumer's channel
    /// dying with it unacked) that a stage queue tolerates; the next return
    /// dead-letters it, so a message is delivered at most limit + 1 times.
    pub delivery_limit: u32,
    /// The delays `publish_delayed` can do; a delay is rounded up to a step.
    pub retry_steps: Vec<Duration>,
    /// How long `publish` keeps trying (reconnecting) before it gives up.
    pub publish_timeout: Duration,
    /// Bound on one TCP + AMQP handshake, so a black-holed broker address
    /// cannot stall a reconnect for the OS's TCP timeout.
    pub connect_timeout: Duration,
    /// First and largest pause between reconnection attempts.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Shown in the management UI / `rabbitmqctl list_connections`.
    pub connection_name: String,
    /// Stage queues beyond `proto::queues::ALL` this process publishes to or
    /// consumes, declared with them: the remote perspectives' (MPIC).
    pub extra_stage_queues: Vec<String>,
}

impl Default for AmqpOptions {
    fn default() -> Self {
        AmqpOptions {
            prefix: String::new(),
            prefetch: 16,
            delivery_limit: 10,
            retry_steps: [250, 1_000, 5_000, 30_000]
                .into_iter()
                .map(Duration::from_millis)
                .collect(),
            publish_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            connection_name: "kiln".into(),
            extra_stage_queues: Vec::new(),
        }
    }
}

/// The RabbitMQ `Queue`. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct AmqpQueue {
    shared: Arc<Shared>,
}

struct Shared {
    broker: Broker,
    /// The confirm-mode channel every publish goes through (lapin channels
    /// are cloneable handles, so publishes pipeline; the lock only guards
    /// replacing a dead channel).
    publisher: tokio::sync::Mutex<Option<Channel>>,
}

impl AmqpQueue {
    /// Connects once and declares the topology. Fails if the broker is not
    /// reachable now; after that, every operation reconnects by itself.
    pub async fn connect(url: &str, options: AmqpOptions) -> Result<AmqpQueue, QueueError> {
        let topology = Topology::new(&options.prefix, &options.retry_steps)?
            .with_stage_queues(&options.extra_stage_queues)?;
        let broker = Broker::new(url, options, topology);
        broker.connection().await?;
        Ok(AmqpQueue {
            shared: Arc::new(Shared {
                broker,
                publisher: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// Whether the connection is open right now (liveness of the link, for
    /// metrics and logs; it does not try to reconnect).
    pub fn is_connected(&self) -> bool {
        self.shared.broker.is_connected()
    }

    /// Readiness probe: reconnects if needed and reports whether that worked.
    pub async fn ready(&self) -> Result<(), QueueError> {
        self.shared.broker.connection().await.map(drop)
    }

    /// Messages ready in `queue` (proto name; unacked ones not counted), for
    /// the autoscaling metric.
    pub async fn queue_depth(&self, queue: &str) -> Result<u32, QueueError> {
        self.queue_stats(queue).await.map(|(messages, _)| messages)
    }

    /// Messages ready in `queue` (proto name) and consumers attached to it.
    pub async fn queue_stats(&self, queue: &str) -> Result<(u32, u32), QueueError> {
        let name = short(&self.shared.broker.topology.name(queue))?;
        let connection = self.shared.broker.connection().await?;
        // A passive declare of a missing queue closes its channel: use a
        // throwaway one rather than the publisher's.
        let channel = connection.create_channel().await.map_err(unavailable)?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declared = channel
            .queue_declare(name, passive, FieldTable::default())
            .await
            .map_err(unavailable)?;
        let _ = channel.close(REPLY_SUCCESS, "depth read".into()).await;
        Ok((declared.message_count(), declared.consumer_count()))
    }

    /// The names this queue declared, for operators' tooling and tests.
    pub fn topology(&self) -> &Topology {
        &self.shared.broker.topology
    }

    /// Stops reconnecting, ends every consumer (`next()` returns `None`) and
    /// closes the connection. Unacked deliveries go back to their queues.
    pub async fn close(&self) {
        self.shared.broker.closed.cancel();
        if let Some(connection) = self.shared.broker.current() {
            let _ = connection.close(REPLY_SUCCESS, "shutdown".into()).await;
        }
    }
}

#[async_trait]
impl Queue for AmqpQueue {
    async fn publish(&self, message: Message) -> Result<(), QueueError> {
        let exchange = self.shared.broker.topology.exchange.clone();
        self.publish_via(&exchange, &message).await
    }

    async fn publish_dead(&self, message: Message, reason: &str) -> Result<(), QueueError> {
        // The dead-letter exchange is a fanout to `kiln.dead`.
        let exchange = self.shared.broker.topology.dead_letter_exchange.clone();
        self.publish_via(&exchange, &message.dead(reason)).await
    }

    fn system(&self) -> &'static str {
        "rabbitmq"
    }

    async fn stats(&self, queue: &str) -> Option<QueueStats> {
        let (messages, consumers) = self.queue_stats(queue).await.ok()?;
        Some(QueueStats {
            messages: u64::from(messages),
            consumers: u64::from(consumers),
        })
    }

    /// Parks the message in the smallest retry step ≥ `delay` (the largest
    /// if none is), whose queue dead-letters it back to its stage queue.
    async fn publish_delayed(&self, message: Message, delay: Duration) -> Result<(), QueueError> {
        let step = self.shared.broker.topology.retry_step(delay);
        let exchange = step
            .map(|step| step.name.clone())
            .ok_or_else(|| QueueError::NotConfirmed("no retry steps configured".into()))?;
        self.publish_via(&exchange, &message).await
    }

    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        let consumer = AmqpConsumer::start(self.shared.clone(), queue, prefetch).await?;
        Ok(Box::new(consumer))
    }
}

fn short(name: &str) -> Result<ShortString, QueueError> {
    ShortString::try_new(name)
        .map_err(|e| QueueError::Unavailable(format!("invalid AMQP name {name:?}: {e}")))
}

fn unavailable(error: lapin::Error) -> QueueError {
    QueueError::Unavailable(error.to_string())
}

fn gave_up(after: Duration, what: &str) -> QueueError {
    QueueError::Unavailable(format!("{what}: timed out after {after:?}"))
}
