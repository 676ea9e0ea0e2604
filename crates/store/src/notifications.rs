//! Finished-order notifications: who waits for an order to become `valid`
//! or `invalid` (the sync and hybrid finalize modes) hears of it here. The
//! transitions that finish an order announce it to this process's
//! subscribers and, on PostgreSQL, `NOTIFY` every other process at commit;
//! one `LISTEN` connection per process relays those into the same channel.

use crate::db::{Backend, Stmt};
use crate::{Store, stmt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// The PostgreSQL notification channel for finished orders.
const DONE_CHANNEL: &str = "kiln_order_done";

/// The statement that tells other processes that an order finished: part
/// of the transaction that finishes it, since PostgreSQL delivers a NOTIFY
/// at commit (and never for a transaction rolled back).
pub(crate) fn notify_done(order_id: &str) -> Stmt {
    stmt!("SELECT pg_notify($1, $2)", DONE_CHANNEL, order_id)
}

impl Store {
    /// Tells waiters in this process that an order finished.
    pub(crate) fn announce_done(&self, order_id: &str) {
        let _ = self.done.send(order_id.to_string());
    }

    /// A stream of ids of orders that became `valid` or `invalid`, from this
    /// process and (PostgreSQL) every other. Subscribe before reading the
    /// order, so a finish in between is not missed. Lagging receivers lose
    /// ids; waiters re-read the order on every wake-up, so that only delays.
    pub async fn subscribe_done(&self) -> broadcast::Receiver<String> {
        let receiver = self.done.subscribe();
        if let Some(postgres) = self.db.postgres() {
            debug_assert_eq!(self.backend(), Backend::Postgres);
            let (url, done) = (Arc::new(postgres.url().to_string()), self.done.clone());
            self.listening
                .get_or_init(|| async move {
                    tokio::spawn(relay_notifications(url, done));
                })
                .await;
        }
        receiver
    }
}

/// Relays PostgreSQL notifications of finished orders into the in-process
/// channel, reconnecting if the connection drops.
async fn relay_notifications(url: Arc<String>, done: broadcast::Sender<String>) {
    loop {
        match sqlx::postgres::PgListener::connect(&url).await {
            Ok(mut listener) => {
                if let Err(e) = listener.listen(DONE_CHANNEL).await {
                    tracing::warn!(error = %e, "LISTEN failed");
                } else {
                    loop {
                        match listener.recv().await {
                            Ok(n) => {
                                let _ = done.send(n.payload().to_string());
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "notification connection lost");
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot LISTEN for finished orders"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
