//! Consuming and acknowledging: a consumer that subscribes again when its
//! channel or connection dies, so `next()` ends only when the queue closes,
//! and acks that report a delivery whose channel is gone.

use super::headers::headers_from_amqp;
use super::{Shared, connection::Backoff, short, unavailable};
use crate::{Acker, Consumer, Delivery, Message, QueueError};
use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::{FieldTable, ShortString};
use proto::Envelope;
use std::sync::Arc;
use tracing::{info, warn};

/// A consumer that outlives its channel: when the channel or connection
/// dies it subscribes again, so `next()` only ends when the queue closes.
pub(super) struct AmqpConsumer {
    shared: Arc<Shared>,
    queue: ShortString,
    prefetch: u16,
    stream: Option<lapin::Consumer>,
    backoff: Backoff,
}

impl AmqpConsumer {
    /// Consumes `queue` (a proto name) with `prefetch` (0: the options').
    /// An unknown queue is an error now; a broker that is away is not:
    /// `next()` subscribes once it is back.
    pub(super) async fn start(
        shared: Arc<Shared>,
        queue: &str,
        prefetch: u16,
    ) -> Result<AmqpConsumer, QueueError> {
        let broker = &shared.broker;
        let prefetch = if prefetch == 0 {
            broker.options.prefetch
        } else {
            prefetch
        };
        let mut consumer = AmqpConsumer {
            queue: short(&broker.topology.name(queue))?,
            prefetch,
            stream: None,
            backoff: Backoff::new(broker.options.reconnect_min, broker.options.reconnect_max),
            shared: shared.clone(),
        };
        match consumer.subscribe().await {
            Ok(stream) => consumer.stream = Some(stream),
            // The connection is fine, so the broker refused the queue itself
            // (unknown name): say so now rather than retrying forever.
            Err(e) if shared.broker.is_connected() => return Err(e),
            // The broker is away: `next()` subscribes once it is back.
            Err(e) => warn!(queue, error = %e, "cannot consume yet; will retry"),
        }
        Ok(consumer)
    }

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
