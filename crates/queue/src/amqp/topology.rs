//! The names and declaration of every exchange and queue (see the parent
//! module's docs for the shape): declared idempotently, every argument
//! explicit, on each (re)connection.

use super::short;
use crate::QueueError;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};
use std::time::Duration;

/// The exchange every job is published to.
pub const EXCHANGE: &str = "kiln";
/// Where stage queues dead-letter rejected and over-delivered messages.
pub const DEAD_LETTER_EXCHANGE: &str = "kiln.dlx";
const RETRY_PREFIX: &str = "kiln.retry.";

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

    /// Also declares `extra` stage queues (proto names), e.g. the remote
    /// perspectives' (MPIC); each is bound and dead-lettered like the rest.
    pub fn with_stage_queues(mut self, extra: &[String]) -> Result<Topology, QueueError> {
        for base in extra {
            let queue = self.name(base);
            short(&queue)?;
            if !self.stage_queues.contains(&queue) {
                self.stage_queues.push(queue);
            }
        }
        Ok(self)
    }

    /// The broker-side name of a proto queue or exchange name.
    pub fn name(&self, base: &str) -> String {
        format!("{}{base}", self.prefix)
    }

    /// `name` without this topology's prefix (a name of another prefix as
    /// it is).
    pub fn unprefixed<'n>(&self, name: &'n str) -> &'n str {
        name.strip_prefix(self.prefix.as_str()).unwrap_or(name)
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

    pub(super) async fn declare(
        &self,
        channel: &Channel,
        delivery_limit: u32,
    ) -> lapin::Result<()> {
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
}
