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

use crate::{Acker, Consumer, Delivery, Message, Queue, QueueError, QueueStats};
use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use lapin::{ExchangeKind, message::BasicReturnMessage};
use proto::Envelope;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The exchange every job is published to.
pub const EXCHANGE: &str = "kiln";
/// Where stage queues dead-letter rejected and over-delivered messages.
pub const DEAD_LETTER_EXCHANGE: &str = "kiln.dlx";
const RETRY_PREFIX: &str = "kiln.retry.";
const CONTENT_TYPE: &str = "application/msgpack";
const PERSISTENT: u8 = 2;
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
        let topology = Topology::new(&options.prefix, &options.retry_steps)?;
        let broker = Broker {
            url: url.to_string(),
            options,
            topology,
            current: RwLock::new(None),
            reconnect_turn: tokio::sync::Mutex::new(()),
            closed: CancellationToken::new(),
        };
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

    /// The publisher's channel, replaced (and the connection with it, if
    /// needed) when it has died.
    async fn publish_channel(&self) -> Result<Channel, QueueError> {
        let mut slot = self.shared.publisher.lock().await;
        if let Some(channel) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(channel.clone());
        }
        let connection = self.shared.broker.connection().await?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        *slot = Some(channel.clone());
        Ok(channel)
    }

    /// Publishes to `exchange` with the message's stage queue as routing key,
    /// retrying transient failures until `publish_timeout`.
    async fn publish_via(&self, exchange: &str, message: &Message) -> Result<(), QueueError> {
        let topology = &self.shared.broker.topology;
        let outgoing = Outgoing {
            exchange: short(exchange)?,
            routing_key: short(&topology.name(message.envelope.job.queue()))?,
            body: message.envelope.encode(),
            properties: properties(message),
        };
        let options = &self.shared.broker.options;
        let deadline = Instant::now() + options.publish_timeout;
        let mut backoff = Backoff::new(options.reconnect_min, options.reconnect_max);
        loop {
            let attempt = tokio::time::timeout_at(deadline, self.publish_once(&outgoing)).await;
            let error = match attempt {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(Attempt::Fail(error))) => return Err(error),
                Ok(Err(Attempt::Retry(error))) => error,
                Err(_elapsed) => return Err(gave_up(options.publish_timeout, "publish")),
            };
            let pause = backoff.next_pause();
            if self.shared.broker.closed.is_cancelled() || Instant::now() + pause >= deadline {
                return Err(error);
            }
            warn!(%error, ?pause, "publish failed; retrying");
            tokio::time::sleep(pause).await;
        }
    }

    async fn publish_once(&self, outgoing: &Outgoing) -> Result<(), Attempt> {
        let channel = self.publish_channel().await.map_err(Attempt::Retry)?;
        let mandatory = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let confirmation = channel
            .basic_publish(
                outgoing.exchange.clone(),
                outgoing.routing_key.clone(),
                mandatory,
                &outgoing.body,
                outgoing.properties.clone(),
            )
            .await
            .map_err(|e| Attempt::Retry(unavailable(e)))?
            .await
            .map_err(|e| Attempt::Retry(unavailable(e)))?;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            // Unroutable: the topology is missing a binding, which retrying
            // does not fix. Without `mandatory` it would be dropped silently.
            Confirmation::Ack(Some(returned)) => Err(Attempt::Fail(not_routed(&returned))),
            // The queue refused it (no quorum leader yet, overflow): may pass.
            Confirmation::Nack(_) => Err(Attempt::Retry(QueueError::NotConfirmed(
                "the broker nacked the message".into(),
            ))),
            Confirmation::NotRequested => Err(Attempt::Fail(QueueError::NotConfirmed(
                "publisher confirms are off on this channel".into(),
            ))),
        }
    }
}

#[async_trait]
impl Queue for AmqpQueue {
    async fn publish(&self, message: Message) -> Result<(), QueueError> {
        let exchange = self.shared.broker.topology.exchange.clone();
        self.publish_via(&exchange, &message).await
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
        let broker = &self.shared.broker;
        let prefetch = if prefetch == 0 {
            broker.options.prefetch
        } else {
            prefetch
        };
        let mut consumer = AmqpConsumer {
            shared: self.shared.clone(),
            queue: short(&broker.topology.name(queue))?,
            prefetch,
            stream: None,
            backoff: Backoff::new(broker.options.reconnect_min, broker.options.reconnect_max),
        };
        match consumer.subscribe().await {
            Ok(stream) => consumer.stream = Some(stream),
            // The connection is fine, so the broker refused the queue itself
            // (unknown name): say so now rather than retrying forever.
            Err(e) if broker.is_connected() => return Err(e),
            // The broker is away: `next()` subscribes once it is back.
            Err(e) => warn!(queue, error = %e, "cannot consume yet; will retry"),
        }
        Ok(Box::new(consumer))
    }
}

/// One publish, prepared once and retried as is.
struct Outgoing {
    exchange: ShortString,
    routing_key: ShortString,
    body: Vec<u8>,
    properties: BasicProperties,
}

enum Attempt {
    /// Might pass on a new channel or connection.
    Retry(QueueError),
    /// Will not pass by trying again.
    Fail(QueueError),
}

fn properties(message: &Message) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type(CONTENT_TYPE.into())
        .with_headers(headers_to_amqp(&message.headers))
}

/// Trace context and friends travel as AMQP long-string headers.
fn headers_to_amqp(headers: &BTreeMap<String, String>) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in headers {
        if is_broker_header(key) {
            warn!(header = %key, "x- headers belong to the broker; dropped");
            continue;
        }
        match ShortString::try_new(key.as_str()) {
            Ok(key) => {
                table.insert(key, AMQPValue::LongString(value.as_str().into()));
            }
            Err(e) => warn!(header = %key, error = %e, "header name too long; dropped"),
        }
    }
    table
}

/// String headers back into `Message.headers`. The broker's own are
/// skipped: the runner copies an input's headers onto the jobs it emits, and
/// a copied `x-first-death-*` would make RabbitMQ misreport that job's death.
fn headers_from_amqp(properties: &BasicProperties) -> BTreeMap<String, String> {
    let Some(table) = properties.headers() else {
        return BTreeMap::new();
    };
    table
        .inner()
        .iter()
        .filter(|(key, _)| !is_broker_header(key.as_str()))
        .filter_map(|(key, value)| {
            let value = match value {
                AMQPValue::LongString(s) => String::from_utf8(s.as_bytes().to_vec()).ok()?,
                AMQPValue::ShortString(s) => s.as_str().to_string(),
                _ => return None,
            };
            Some((key.as_str().to_string(), value))
        })
        .collect()
}

/// `x-death`, `x-first-death-reason`, `x-delivery-count`, …
fn is_broker_header(name: &str) -> bool {
    name.starts_with("x-")
}

fn to_delivery(delivery: lapin::message::Delivery) -> Delivery {
    let message = Envelope::decode(&delivery.data)
        .map(|envelope| Message {
            envelope,
            headers: headers_from_amqp(&delivery.properties),
        })
        .map_err(|e| format!("undecodable body ({} bytes): {e}", delivery.data.len()));
    Delivery {
        message,
        redelivered: delivery.redelivered,
        acker: Box::new(AmqpAcker(delivery.acker)),
    }
}

/// The connection and what is needed to make it again.
struct Broker {
    url: String,
    options: AmqpOptions,
    topology: Topology,
    /// Readable without waiting, for `is_connected`.
    current: RwLock<Option<Arc<Connection>>>,
    /// Held while (re)connecting so a dozen callers that all saw the
    /// connection die open one new connection, not a dozen.
    reconnect_turn: tokio::sync::Mutex<()>,
    closed: CancellationToken,
}

impl Broker {
    fn current(&self) -> Option<Arc<Connection>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn is_connected(&self) -> bool {
        self.current().is_some_and(|c| c.status().connected())
    }

    /// The open connection, or a new one (topology declared) if it died.
    async fn connection(&self) -> Result<Arc<Connection>, QueueError> {
        if let Some(connection) = self.current().filter(|c| c.status().connected()) {
            return Ok(connection);
        }
        let _turn = self.reconnect_turn.lock().await;
        // Someone else may have reconnected while this caller waited.
        if let Some(connection) = self.current().filter(|c| c.status().connected()) {
            return Ok(connection);
        }
        if self.closed.is_cancelled() {
            return Err(QueueError::Closed);
        }
        let connection = Arc::new(self.open().await?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(connection.clone());
        info!(connection = %self.options.connection_name, "connected to RabbitMQ");
        Ok(connection)
    }

    async fn open(&self) -> Result<Connection, QueueError> {
        let properties = ConnectionProperties::default()
            .with_connection_name(self.options.connection_name.as_str().into());
        let connecting = Connection::connect(&self.url, properties);
        let connection = tokio::time::timeout(self.options.connect_timeout, connecting)
            .await
            .map_err(|_| gave_up(self.options.connect_timeout, "connect"))?
            .map_err(unavailable)?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        self.topology
            .declare(&channel, self.options.delivery_limit)
            .await
            .map_err(|e| QueueError::Unavailable(format!("declaring the topology: {e}")))?;
        let _ = channel
            .close(REPLY_SUCCESS, "topology declared".into())
            .await;
        Ok(connection)
    }
}

/// Every exchange and queue name, prefix applied.
#[derive(Clone, Debug)]
pub struct Topology {
    prefix: String,
    pub exchange: String,
    pub dead_letter_exchange: String,
    pub dead_queue: String,
    pub stage_queues: Vec<String>,
    /// Ascending by delay.
    pub retry_steps: Vec<RetryStep>,
}

/// One delay step: an exchange and a queue of this name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryStep {
    pub delay: Duration,
    pub name: String,
}

impl Topology {
    pub fn new(prefix: &str, retry_steps: &[Duration]) -> Result<Topology, QueueError> {
        let mut delays = retry_steps.to_vec();
        delays.sort();
        delays.dedup_by_key(|d| d.as_millis());
        if delays.is_empty() {
            return Err(QueueError::Unavailable(
                "invalid AMQP options: no retry steps".into(),
            ));
        }
        let name = |base: &str| format!("{prefix}{base}");
        let topology = Topology {
            prefix: prefix.to_string(),
            exchange: name(EXCHANGE),
            dead_letter_exchange: name(DEAD_LETTER_EXCHANGE),
            dead_queue: name(proto::queues::DEAD),
            stage_queues: proto::queues::ALL.iter().map(|q| name(q)).collect(),
            retry_steps: delays
                .into_iter()
                .map(|delay| RetryStep {
                    delay,
                    name: name(&format!("{RETRY_PREFIX}{}", delay.as_millis())),
                })
                .collect(),
        };
        // Catch a too-long prefix here rather than in the first declare.
        for name in topology.all_names() {
            short(name)?;
        }
        Ok(topology)
    }

    /// The broker-side name of a proto queue or exchange name.
    pub fn name(&self, base: &str) -> String {
        format!("{}{base}", self.prefix)
    }

    /// The smallest step that waits at least `delay`, else the largest
    /// (`None` only if someone emptied `retry_steps`; `new` refuses that).
    pub fn retry_step(&self, delay: Duration) -> Option<&RetryStep> {
        self.retry_steps
            .iter()
            .find(|step| step.delay >= delay)
            .or(self.retry_steps.last())
    }

    /// Every queue this topology declares (retry steps name a queue each).
    pub fn all_queues(&self) -> impl Iterator<Item = &str> {
        let retry = self.retry_steps.iter().map(|s| s.name.as_str());
        let stages = self.stage_queues.iter().map(String::as_str);
        stages.chain([self.dead_queue.as_str()]).chain(retry)
    }

    /// Every exchange this topology declares.
    pub fn all_exchanges(&self) -> impl Iterator<Item = &str> {
        let retry = self.retry_steps.iter().map(|s| s.name.as_str());
        [self.exchange.as_str(), self.dead_letter_exchange.as_str()]
            .into_iter()
            .chain(retry)
    }

    fn all_names(&self) -> impl Iterator<Item = &str> {
        self.all_queues().chain(self.all_exchanges())
    }

    async fn declare(&self, channel: &Channel, delivery_limit: u32) -> lapin::Result<()> {
        let direct = ExchangeKind::Direct;
        declare_exchange(channel, &self.exchange, direct).await?;
        declare_exchange(channel, &self.dead_letter_exchange, ExchangeKind::Fanout).await?;
        declare_queue(channel, &self.dead_queue, dead_queue_arguments()).await?;
        // A fanout exchange ignores the binding key.
        bind(channel, &self.dead_queue, &self.dead_letter_exchange, "").await?;
        for queue in &self.stage_queues {
            let arguments = stage_queue_arguments(&self.dead_letter_exchange, delivery_limit);
            declare_queue(channel, queue, arguments).await?;
            bind(channel, queue, &self.exchange, queue).await?;
        }
        for step in &self.retry_steps {
            // Fanout, so the routing key can stay the target stage queue.
            declare_exchange(channel, &step.name, ExchangeKind::Fanout).await?;
            declare_queue(
                channel,
                &step.name,
                retry_queue_arguments(step, &self.exchange),
            )
            .await?;
            bind(channel, &step.name, &step.name, "").await?;
        }
        Ok(())
    }
}

fn stage_queue_arguments(dead_letter_exchange: &str, delivery_limit: u32) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), string("quorum"));
    arguments.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(i64::from(delivery_limit)),
    );
    arguments.insert(
        "x-dead-letter-exchange".into(),
        string(dead_letter_exchange),
    );
    // At-least-once dead-lettering (3.10+) keeps a message in its stage
    // queue until `kiln.dead` confirms it; the broker only honours it with
    // reject-publish overflow (no length limit is set, so nothing is refused).
    arguments.insert("x-dead-letter-strategy".into(), string("at-least-once"));
    arguments.insert("x-overflow".into(), string("reject-publish"));
    arguments
}

fn dead_queue_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), string("quorum"));
    arguments
}

fn retry_queue_arguments(step: &RetryStep, stage_exchange: &str) -> FieldTable {
    let ttl = i64::try_from(step.delay.as_millis()).unwrap_or(i64::MAX);
    let mut arguments = FieldTable::default();
    // Classic: every message waits the same TTL, so they expire in order at
    // the head; quorum queues gained message TTL only in 3.10 with caveats.
    arguments.insert("x-queue-type".into(), string("classic"));
    arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
    arguments.insert("x-dead-letter-exchange".into(), string(stage_exchange));
    arguments
}

async fn declare_exchange(channel: &Channel, name: &str, kind: ExchangeKind) -> lapin::Result<()> {
    let options = ExchangeDeclareOptions {
        passive: false,
        durable: true,
        auto_delete: false,
        internal: false,
        nowait: false,
    };
    channel
        .exchange_declare(name.into(), kind, options, FieldTable::default())
        .await
}

async fn declare_queue(channel: &Channel, name: &str, arguments: FieldTable) -> lapin::Result<()> {
    let options = QueueDeclareOptions {
        passive: false,
        durable: true,
        exclusive: false,
        auto_delete: false,
        nowait: false,
    };
    channel
        .queue_declare(name.into(), options, arguments)
        .await
        .map(drop)
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str) -> lapin::Result<()> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

fn string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// A consumer that outlives its channel: when the channel or connection
/// dies it subscribes again, so `next()` only ends when the queue closes.
struct AmqpConsumer {
    shared: Arc<Shared>,
    queue: ShortString,
    prefetch: u16,
    stream: Option<lapin::Consumer>,
    backoff: Backoff,
}

impl AmqpConsumer {
    /// A new channel with this consumer's prefetch, consuming the queue.
    async fn subscribe(&self) -> Result<lapin::Consumer, QueueError> {
        let connection = self.shared.broker.connection().await?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        // Per consumer (global = false): quorum queues do not support global QoS.
        channel
            .basic_qos(self.prefetch, BasicQosOptions { global: false })
            .await
            .map_err(unavailable)?;
        let options = BasicConsumeOptions {
            no_local: false,
            no_ack: false,
            exclusive: false,
            nowait: false,
        };
        // The lapin consumer keeps its channel open; dropping it closes it.
        channel
            .basic_consume(
                self.queue.clone(),
                "".into(),
                options,
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)
    }

    /// Resubscribes after a pause; an error is handed to the caller (the
    /// runner logs it and calls again), so outages are visible in the logs.
    async fn resubscribe(&mut self) -> Result<(), QueueError> {
        let pause = self.backoff.next_pause();
        tokio::select! {
            _ = self.shared.broker.closed.cancelled() => return Err(QueueError::Closed),
            _ = tokio::time::sleep(pause) => {}
        }
        let stream = self.subscribe().await?;
        info!(queue = %self.queue, "consuming again");
        self.backoff.reset();
        self.stream = Some(stream);
        Ok(())
    }
}

#[async_trait]
impl Consumer for AmqpConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, QueueError>> {
        loop {
            let closed = self.shared.broker.closed.clone();
            if closed.is_cancelled() {
                return None;
            }
            let Some(stream) = self.stream.as_mut() else {
                match self.resubscribe().await {
                    Ok(()) => continue,
                    Err(QueueError::Closed) => return None,
                    Err(e) => return Some(Err(e)),
                }
            };
            let item = tokio::select! {
                _ = closed.cancelled() => return None,
                item = stream.next() => item,
            };
            match item {
                Some(Ok(delivery)) => return Some(Ok(to_delivery(delivery))),
                Some(Err(e)) => {
                    warn!(queue = %self.queue, error = %e, "consumer lost; resubscribing")
                }
                // Cancelled by the broker (queue deleted, node stopping).
                None => warn!(queue = %self.queue, "consumer cancelled; resubscribing"),
            }
            self.stream = None;
        }
    }
}

struct AmqpAcker(lapin::Acker);

#[async_trait]
impl Acker for AmqpAcker {
    async fn ack(&self) -> Result<(), QueueError> {
        let sent = self.0.ack(BasicAckOptions { multiple: false }).await;
        acknowledged(sent)
    }

    async fn reject(&self) -> Result<(), QueueError> {
        let sent = self.0.reject(BasicRejectOptions { requeue: false }).await;
        acknowledged(sent)
    }
}

/// lapin reports an ack it could not send (channel gone, or already
/// acknowledged) as `Ok(false)`; to the runner that is a failed ack.
fn acknowledged(sent: lapin::Result<bool>) -> Result<(), QueueError> {
    match sent {
        Ok(true) => Ok(()),
        Ok(false) => Err(QueueError::Unavailable(
            "delivery's channel is gone; the broker will redeliver it".into(),
        )),
        Err(e) => Err(unavailable(e)),
    }
}

/// Exponential backoff with jitter, so replicas that lost the broker together
/// do not all knock at the same instant.
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        // Between half and all of the nominal pause.
        let jitter = RandomState::new().hash_one(std::time::Instant::now()) % 1_000;
        pause / 2 + pause.mul_f64(jitter as f64 / 2_000.0)
    }

    fn reset(&mut self) {
        self.next = self.min;
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

fn not_routed(returned: &BasicReturnMessage) -> QueueError {
    QueueError::NotConfirmed(format!(
        "returned unroutable ({} {}) from exchange {:?} with routing key {:?}",
        returned.reply_code,
        returned.reply_text,
        returned.delivery.exchange.as_str(),
        returned.delivery.routing_key.as_str(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_delay_rounds_up_to_a_step_or_down_to_the_largest() {
        let topology = Topology::new("", &[ms(5_000), ms(250), ms(1_000), ms(250)]).unwrap();
        let steps: Vec<_> = topology.retry_steps.iter().map(|s| s.delay).collect();
        assert_eq!(steps, vec![ms(250), ms(1_000), ms(5_000)]);
        assert_eq!(topology.retry_step(ms(0)).unwrap().name, "kiln.retry.250");
        assert_eq!(topology.retry_step(ms(250)).unwrap().name, "kiln.retry.250");
        assert_eq!(
            topology.retry_step(ms(251)).unwrap().name,
            "kiln.retry.1000"
        );
        assert_eq!(
            topology.retry_step(ms(60_000)).unwrap().name,
            "kiln.retry.5000"
        );
    }

    #[test]
    fn names_are_proto_names_behind_the_prefix() {
        let plain = Topology::new("", &[ms(250)]).unwrap();
        assert_eq!(plain.exchange, "kiln");
        assert_eq!(plain.stage_queues, proto::queues::ALL.to_vec());
        let prefixed = Topology::new("t1.", &[ms(250)]).unwrap();
        assert_eq!(prefixed.name(proto::queues::SIGNER), "t1.kiln.signer");
        assert_eq!(prefixed.dead_queue, "t1.kiln.dead");
        assert_eq!(prefixed.retry_steps[0].name, "t1.kiln.retry.250");
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(Topology::new("", &[]).is_err());
        assert!(Topology::new(&"x".repeat(250), &[ms(1)]).is_err());
    }

    #[test]
    fn string_headers_round_trip_and_broker_headers_are_skipped() {
        let mut sent = BTreeMap::from([("x-mine".to_string(), "no".to_string())]);
        let headers = BTreeMap::from([
            ("traceparent".to_string(), "00-abc-def-01".to_string()),
            ("tracestate".to_string(), "k=v".to_string()),
        ]);
        sent.extend(headers.clone());
        let mut table = headers_to_amqp(&sent);
        assert!(!table.contains_key("x-mine"));
        table.insert("x-death".into(), AMQPValue::FieldArray(Default::default()));
        table.insert("x-first-death-reason".into(), string("expired"));
        table.insert("x-delivery-count".into(), AMQPValue::LongLongInt(3));
        table.insert("priority".into(), AMQPValue::LongLongInt(3));
        let properties = BasicProperties::default().with_headers(table);
        assert_eq!(headers_from_amqp(&properties), headers);
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut backoff = Backoff::new(ms(100), ms(400));
        let pauses: Vec<_> = (0..4).map(|_| backoff.next_pause()).collect();
        for (pause, nominal) in pauses.iter().zip([100, 200, 400, 400]) {
            assert!(
                *pause >= ms(nominal / 2) && *pause <= ms(nominal),
                "{pauses:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_pause() <= ms(100));
    }
}
