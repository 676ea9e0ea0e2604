//! The in-process back end: one unbounded channel per queue. Nothing survives
//! the process — the sweeper re-drives orders from the database after a
//! restart, which is why messages carry ids and never state.

use crate::{Acker, Consumer, Delivery, Message, Queue, QueueError};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

type Receiver = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Message>>>;
type Channel = (mpsc::UnboundedSender<Message>, Receiver);

#[derive(Clone, Default)]
pub struct MemoryQueue {
    queues: Arc<Mutex<HashMap<String, Channel>>>,
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
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn publish(&self, message: Message) -> Result<(), QueueError> {
        let (tx, _) = self.channel(message.envelope.job.queue());
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

    async fn consume(&self, queue: &str, _prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        let (_, rx) = self.channel(queue);
        Ok(Box::new(MemoryConsumer { rx }))
    }
}

struct MemoryConsumer {
    rx: Receiver,
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
