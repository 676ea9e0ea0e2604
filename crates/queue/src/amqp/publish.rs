//! Publishing with confirms (invariant 4): a publish returns once the broker
//! has the message, and retries on a fresh channel or connection until
//! `publish_timeout`; an unroutable message fails at once.

use super::headers::properties;
use super::{AmqpQueue, connection::Backoff, gave_up, short, unavailable};
use crate::{Message, QueueError};
use lapin::message::BasicReturnMessage;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Confirmation};
use tokio::time::Instant;
use tracing::warn;

impl AmqpQueue {
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
    pub(super) async fn publish_via(
        &self,
        exchange: &str,
        message: &Message,
    ) -> Result<(), QueueError> {
        let topology = &self.shared.broker.topology;
        let outgoing = Outgoing {
            exchange: short(exchange)?,
            routing_key: short(&topology.name(&message.envelope.job.queue()))?,
            body: message.envelope.encode(),
            properties: properties(message),
        };
        let options = &self.shared.broker.options;
        let deadline = Instant::now() + options.publish_timeout;
        let mut backoff = Backoff::new(options.reconnect_min, options.reconnect_max);
        let mut last_error = None;
        loop {
            let attempt = tokio::time::timeout_at(deadline, self.publish_once(&outgoing)).await;
            let error = match attempt {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(Attempt::Fail(error))) => return Err(error),
                Ok(Err(Attempt::Retry(error))) => error,
                // An attempt still in flight at the deadline says less than
                // the refusal before it (a nack stays a nack).
                Err(_elapsed) => {
                    return Err(
                        last_error.unwrap_or_else(|| gave_up(options.publish_timeout, "publish"))
                    );
                }
            };
            let pause = backoff.next_pause();
            if self.shared.broker.closed.is_cancelled() || Instant::now() + pause >= deadline {
                return Err(error);
            }
            warn!(%error, ?pause, "publish failed; retrying");
            last_error = Some(error);
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

fn not_routed(returned: &BasicReturnMessage) -> QueueError {
    QueueError::NotConfirmed(format!(
        "returned unroutable ({} {}) from exchange {:?} with routing key {:?}",
        returned.reply_code,
        returned.reply_text,
        returned.delivery.exchange.as_str(),
        returned.delivery.routing_key.as_str(),
    ))
}
