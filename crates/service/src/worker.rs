//! Connecting to the shared database and broker, and running one stage
//! until SIGTERM with its admin endpoints beside it.

use crate::admin::{self, Check};
use crate::config::Common;
use anyhow::Context;
use queue::amqp::{AmqpOptions, AmqpQueue};
use queue::{Handler, Queue, run_stage_reporting};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use store::Store;
use tokio_util::sync::CancellationToken;

/// A binary's connections and lifecycle, built from its config.
pub struct Wiring {
    pub common: Common,
    pub store: Store,
    pub amqp: AmqpQueue,
    pub queue: Arc<dyn Queue>,
    pub shutdown: CancellationToken,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Labels the broker connection and the teardown's log lines.
    name: String,
}

impl Wiring {
    /// Connects to the database (already migrated by `kiln migrate`) and
    /// the broker; `name` labels the broker connection.
    pub async fn connect(common: Common, name: &str) -> anyhow::Result<Wiring> {
        Self::connect_declaring(common, name, Vec::new()).await
    }

    /// As [`Wiring::connect`], declaring `extra_stage_queues` too (the
    /// remote perspectives' queues, which only validators use).
    pub async fn connect_declaring(
        common: Common,
        name: &str,
        extra_stage_queues: Vec<String>,
    ) -> anyhow::Result<Wiring> {
        let metrics = admin::install_metrics();
        let shutdown = crate::shutdown_on_signals();
        let db_url = common.database.resolve("database")?;
        let store = Store::connect_with(&db_url, common.database.max_connections)
            .await
            .context("connecting to the database")?;
        let broker = common
            .broker
            .as_ref()
            .context("[broker] is required for a distributed binary")?;
        let options = AmqpOptions {
            prefix: broker.prefix.clone(),
            prefetch: u16::try_from(common.runner.concurrency).unwrap_or(u16::MAX),
            connection_name: format!("kiln-{name}-{}", std::process::id()),
            extra_stage_queues,
            ..AmqpOptions::default()
        };
        let amqp = AmqpQueue::connect(&broker.url()?, options)
            .await
            .context("connecting to the broker")?;
        let queue: Arc<dyn Queue> = Arc::new(amqp.clone());
        Ok(Wiring {
            common,
            store,
            amqp,
            queue,
            shutdown,
            metrics,
            name: name.to_string(),
        })
    }

    /// Readiness checks for the database and the broker.
    pub fn base_checks(&self) -> Vec<Check> {
        let store = self.store.clone();
        let amqp = self.amqp.clone();
        vec![
            admin::check("database", move || {
                let store = store.clone();
                async move { store.ping().await }
            }),
            admin::check("broker", move || {
                let amqp = amqp.clone();
                async move { amqp.is_connected() }
            }),
        ]
    }

    /// Serves the admin endpoints (and `extra` routes) in the background.
    pub fn spawn_admin(
        &self,
        checks: Vec<Check>,
        extra: axum::Router,
    ) -> tokio::task::JoinHandle<()> {
        let (listen, metrics, shutdown) = (
            self.common.admin.listen,
            self.metrics.clone(),
            self.shutdown.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = admin::serve(listen, checks, metrics, extra, shutdown).await {
                tracing::error!(error = %e, %listen, "admin endpoints failed");
            }
        })
    }

    /// The teardown of a binary whose work is done: flushes the spans,
    /// cancels `shutdown`, waits for `tasks` (the admin endpoints, the
    /// sweeper: whatever stops on it), then closes the broker and database
    /// connections, waiting at most [`CLOSE_TIMEOUT`] for them.
    pub async fn close(self, tasks: impl IntoIterator<Item = tokio::task::JoinHandle<()>>) {
        // The spans of the work just finished leave before anything that
        // could hang on a broker going away (closing is bounded too).
        crate::telemetry::flush();
        self.shutdown.cancel();
        for task in tasks {
            let _ = task.await;
        }
        let closing = async {
            self.amqp.close().await;
            self.store.close().await;
        };
        if tokio::time::timeout(CLOSE_TIMEOUT, closing).await.is_err() {
            tracing::warn!(
                stage = %self.name,
                "closing the broker and database connections timed out"
            );
        }
    }
}

/// How long a stopping binary waits for its broker and database
/// connections to close.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs one stage until SIGTERM: consume, handle, publish, ack; then stop
/// consuming, finish and ack the jobs in hand, close, return.
pub async fn run_worker<H: Handler>(
    wiring: Wiring,
    queue_name: &'static str,
    handler: H,
) -> anyhow::Result<()> {
    let consuming = Arc::new(AtomicBool::new(false));
    let mut checks = wiring.base_checks();
    let flag = consuming.clone();
    checks.push(admin::check("consumer", move || {
        let flag = flag.clone();
        async move { flag.load(Ordering::Acquire) }
    }));
    let admin = wiring.spawn_admin(checks, axum::Router::new());
    let stage = handler.stage();
    tracing::info!(stage, queue = queue_name, "stage starting");
    run_stage_reporting(
        crate::stage_io(wiring.queue.clone(), &wiring.store),
        queue_name,
        Arc::new(handler),
        wiring.common.runner.runner_config(),
        wiring.shutdown.clone(),
        consuming,
    )
    .await
    .context("consuming")?;
    tracing::info!(stage, "drained; closing");
    wiring.close([admin]).await;
    Ok(())
}
