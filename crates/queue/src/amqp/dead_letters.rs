//! `kiln.dead` for an operator: read what is there without taking it, and
//! put chosen jobs back into their stage queues.
//!
//! Both read with `basic.get` on a channel of their own and leave every
//! message they do not take unacknowledged until the end; closing the
//! channel returns those to the queue in their order. Reading therefore
//! never loses a dead letter, even if the process dies mid-way, and a
//! replayed one is acked only after the broker has confirmed its
//! republication (at worst it is then both replayed and still dead, which
//! the stages' idempotence absorbs: invariant 2).

use super::{AmqpQueue, REPLY_SUCCESS, headers::headers_from_amqp, short, unavailable};
use crate::{DEAD_REASON_HEADER, DEAD_STAGE_HEADER, Message, Queue, QueueError};
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::types::AMQPValue;
use proto::{Envelope, Job};
use std::collections::BTreeMap;

/// One message in `kiln.dead`.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// The job, or why the body does not decode.
    pub job: Result<Job, String>,
    /// The attempt it died at (0 if the body does not decode).
    pub attempt: u32,
    /// Why it died: the stage's `kiln-dead-reason`, else the broker's own
    /// (`rejected`, `delivery_limit`, …), else `unknown`.
    pub reason: String,
    /// The stage queue its kind routes to (proto name, prefix removed),
    /// where a replay sends it.
    pub queue: String,
    /// The stage that gave up on it (`kiln-dead-stage`); `None` for the
    /// broker's own dead letters (rejected, over the delivery limit).
    pub stage: Option<String>,
    /// Its transport headers (trace context, the reason).
    pub headers: BTreeMap<String, String>,
}

/// What a replay did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Published back to their stage queues (and removed from `kiln.dead`).
    pub replayed: usize,
    /// Left in `kiln.dead`: not chosen, or undecodable.
    pub kept: usize,
}

impl AmqpQueue {
    /// Up to `limit` dead letters, oldest first, all left in place.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let channel = self.dead_letter_channel().await?;
        let mut letters = Vec::new();
        while letters.len() < limit {
            let Some(delivery) = self.get_dead(&channel).await? else {
                break;
            };
            letters.push(self.dead_letter(&delivery));
        }
        // Every message read is still unacked: closing returns them all.
        let _ = channel
            .close(REPLY_SUCCESS, "dead letters read".into())
            .await;
        Ok(letters)
    }

    /// Publishes every decodable dead letter that `choose` picks back to its
    /// stage queue as a first attempt (its retries spent, a replayed job
    /// would otherwise be given up on at once), without the dead reason.
    /// Only the letters present when it starts are looked at; the rest stay.
    pub async fn replay_dead_letters(
        &self,
        choose: impl Fn(&DeadLetter) -> bool,
    ) -> Result<Replayed, QueueError> {
        let (present, _) = self.queue_stats(proto::queues::DEAD).await?;
        let channel = self.dead_letter_channel().await?;
        let mut outcome = Replayed::default();
        for _ in 0..present {
            let Some(delivery) = self.get_dead(&channel).await? else {
                break;
            };
            let letter = self.dead_letter(&delivery);
            let job = match &letter.job {
                Ok(job) if choose(&letter) => job.clone(),
                _ => {
                    outcome.kept += 1;
                    continue;
                }
            };
            let mut headers = letter.headers;
            headers.remove(DEAD_REASON_HEADER);
            headers.remove(DEAD_STAGE_HEADER);
            let again = Message {
                envelope: Envelope::new(job),
                headers,
            };
            self.publish(again).await?;
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(unavailable)?;
            outcome.replayed += 1;
        }
        let _ = channel
            .close(REPLY_SUCCESS, "dead letters replayed".into())
            .await;
        Ok(outcome)
    }

    async fn dead_letter_channel(&self) -> Result<Channel, QueueError> {
        let connection = self.shared.broker.connection().await?;
        connection.create_channel().await.map_err(unavailable)
    }

    async fn get_dead(&self, channel: &Channel) -> Result<Option<Delivery>, QueueError> {
        let queue = short(&self.shared.broker.topology.dead_queue)?;
        let got = channel
            .basic_get(queue, BasicGetOptions { no_ack: false })
            .await
            .map_err(unavailable)?;
        Ok(got.map(|message| message.delivery))
    }

    fn dead_letter(&self, delivery: &Delivery) -> DeadLetter {
        let headers = headers_from_amqp(&delivery.properties);
        let envelope = Envelope::decode(&delivery.data);
        let reason = headers
            .get(DEAD_REASON_HEADER)
            .cloned()
            .or_else(|| broker_header(delivery, "x-first-death-reason"))
            .unwrap_or_else(|| "unknown".into());
        let routing_key = delivery.routing_key.as_str();
        DeadLetter {
            attempt: envelope.as_ref().map_or(0, |e| e.attempt),
            job: envelope
                .map(|e| e.job)
                .map_err(|e| format!("undecodable body ({} bytes): {e}", delivery.data.len())),
            reason,
            queue: self
                .shared
                .broker
                .topology
                .unprefixed(routing_key)
                .to_string(),
            stage: headers.get(DEAD_STAGE_HEADER).cloned(),
            headers,
        }
    }
}

/// A string header the broker set (`x-first-death-reason`, …).
fn broker_header(delivery: &Delivery, name: &str) -> Option<String> {
    let table = delivery.properties.headers().as_ref()?;
    match table.inner().get(name)? {
        AMQPValue::LongString(s) => String::from_utf8(s.as_bytes().to_vec()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}
