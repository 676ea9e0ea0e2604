//! The one connection an `AmqpQueue` and its clones share: opened again by
//! whoever first finds it dead (one at a time), with the topology declared
//! anew; and the backoff every reconnecting caller waits with.

use super::{AmqpOptions, REPLY_SUCCESS, Topology, gave_up, unavailable};
use crate::QueueError;
use lapin::{Connection, ConnectionProperties};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// The connection and what is needed to make it again.
pub(super) struct Broker {
    url: String,
    pub(super) options: AmqpOptions,
    pub(super) topology: Topology,
    /// Readable without waiting, for `is_connected`.
    current: RwLock<Option<Arc<Connection>>>,
    /// Held while (re)connecting so a dozen callers that all saw the
    /// connection die open one new connection, not a dozen.
    reconnect_turn: tokio::sync::Mutex<()>,
    /// Cancelled by `close`: no more reconnecting, consumers end.
    pub(super) closed: CancellationToken,
}

impl Broker {
    /// Not connected yet: `connection()` connects.
    pub(super) fn new(url: &str, options: AmqpOptions, topology: Topology) -> Broker {
        Broker {
            url: url.to_string(),
            options,
            topology,
            current: RwLock::new(None),
            reconnect_turn: tokio::sync::Mutex::new(()),
            closed: CancellationToken::new(),
        }
    }

    pub(super) fn current(&self) -> Option<Arc<Connection>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn is_connected(&self) -> bool {
        self.current().is_some_and(|c| c.status().connected())
    }

    /// The open connection, or a new one (topology declared) if it died.
    pub(super) async fn connection(&self) -> Result<Arc<Connection>, QueueError> {
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

/// Exponential backoff with jitter, so replicas that lost the broker together
/// do not all knock at the same instant.
pub(super) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(super) fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    pub(super) fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        // Between half and all of the nominal pause.
        let jitter = RandomState::new().hash_one(std::time::Instant::now()) % 1_000;
        pause / 2 + pause.mul_f64(jitter as f64 / 2_000.0)
    }

    pub(super) fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
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
