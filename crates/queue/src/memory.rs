//! The in-process back end: one unbounded channel per queue. Nothing survives
//! the process — the sweeper re-drives orders from the database after a
//! restart, which is why messages carry ids and never state.

use crate::{Acker, Consumer, Delivery, Message, Queue, QueueError, QueueStats};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

type Receiver = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Message>>>;
type Channel = (mpsc::UnboundedSender<Message>, Receiver);

#[derive(Clone, Default)]
pub struct MemoryQueue {
    queues: Arc<Mutex<HashMap<String, Channel>>>,
    /// Live consumers per queue, for the `kiln_queue_consumers` gauge.
    consumers: Arc<Mutex<HashMap<String, Arc<AtomicUsize>>>>,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn channel(&self, name: &str) -> Channel {
        let mut queues = self.queues.lock().expect("queue map lock");
        let (tx, rx) = queues.entry(name.to_string()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            (tx, Arc::new(tokio::sync::Mutex::new(rx)))
        });
        (tx.clone(), rx.clone())
    }

    /// Messages waiting in `queue` (not counting those being handled).
    pub fn depth(&self, queue: &str) -> usize {
        let (_, rx) = self.channel(queue);
        rx.try_lock().map(|rx| rx.len()).unwrap_or(0)
    }

    fn consumer_count(&self, queue: &str) -> Arc<AtomicUsize> {
        let mut consumers = self.consumers.lock().expect("consumer map lock");
        consumers.entry(queue.to_string()).or_default().clone()
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn publish(&self, message: Message) -> Result<(), QueueError> {
        let (tx, _) = self.channel(&message.envelope.job.queue());
        tx.send(message).map_err(|_| QueueError::Closed)
    }

    async fn publish_delayed(&self, message: Message, delay: Duration) -> Result<(), QueueError> {
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = queue.publish(message).await;
        });
        Ok(())
    }

    async fn publish_dead(&self, message: Message, reason: &str) -> Result<(), QueueError> {
        let (tx, _) = self.channel(proto::queues::DEAD);
        tx.send(message.dead(reason))
            .map_err(|_| QueueError::Closed)
    }

    async fn consume(&self, queue: &str, _prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        let (_, rx) = self.channel(queue);
        let live = self.consumer_count(queue);
        live.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(MemoryConsumer { rx, live }))
    }

    async fn stats(&self, queue: &str) -> Option<QueueStats> {
        Some(QueueStats {
            messages: self.depth(queue) as u64,
            consumers: self.consumer_count(queue).load(Ordering::Relaxed) as u64,
        })
    }
}

struct MemoryConsumer {
    rx: Receiver,
    live: Arc<AtomicUsize>,
}

impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, QueueError>> {
        let message = self.rx.lock().await.recv().await?;
        Some(Ok(Delivery {
            message: Ok(message),
            redelivered: false,
            acker: Box::new(NoAck),
        }))
    }
}

/// In-process deliveries need no acknowledgement: the channel already
/// handed the message to exactly one consumer.
struct NoAck;

#[async_trait]
impl Acker for NoAck {
    async fn ack(&self) -> Result<(), QueueError> {
        Ok(())
    }
    async fn reject(&self) -> Result<(), QueueError> {
        Ok(())
    }
}
