//! Re-drives work the queue may have lost (invariant 1 and 6): a processing
//! order whose step is past its deadline gets its step's job again, or ends
//! `invalid` once the whole finalization is past its deadline; a challenge
//! stuck in `processing` is validated again.
//!
//! The leading sweeper also keeps the pipeline-wide gauges of `/metrics`
//! (every few seconds): in-flight finalizes (`kiln_orders_processing`), orders
//! past a deadline (`kiln_orders_stuck`), queue depth and consumers per queue
//! (`kiln_queue_depth`, `kiln_queue_consumers`), and the finalize→done
//! latency of every order that finished since (`kiln_finalize_duration_seconds`,
//! from the order's stored timeline, so no stage records it).

use proto::Job;
use queue::{Message, Queue};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{Store, now_ms};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub struct Sweeper {
    pub store: Store,
    pub queue: Arc<dyn Queue>,
    /// New deadline given to a re-driven step.
    pub step_timeout: Duration,
}

const BATCH: i64 = 500;
/// The advisory lock key of the sweeper ("kiln" in ASCII).
const SWEEPER_LOCK: i64 = 0x6b696c6e;

impl Sweeper {
    /// One pass. `now` may be far in the future to re-drive everything, as
    /// the embedded mode does at start-up (its in-process queue starts empty).
    pub async fn sweep(&self, now: i64) -> Result<usize, store::StoreError> {
        let mut redriven = 0;
        let next_deadline = now_ms() + self.step_timeout.as_millis() as i64;
        for order in self.store.overdue_orders(now, BATCH).await? {
            // Overdue orders are processing: each has a step and its job.
            let (Some(step), Some(job)) = (order.step, order.job_for_current_step()) else {
                continue;
            };
            if order.finalize_deadline.is_some_and(|d| d < now_ms()) {
                warn!(order_id = order.id, %step, "finalization deadline passed");
                metrics::counter!("kiln_orders_expired_total").increment(1);
                self.store
                    .fail_order(
                        &order.id,
                        &domain::Problem::new(
                            domain::ProblemKind::ServerInternal,
                            "finalization did not complete in time; please create a new order",
                        ),
                    )
                    .await?;
                continue;
            }
            if self
                .store
                .extend_step_deadline(&order.id, step, next_deadline)
                .await?
            {
                info!(order_id = order.id, %step, "re-driving overdue order");
                metrics::counter!("kiln_sweeper_redriven_total", "kind" => "order", "step" => step.as_str())
                    .increment(1);
                self.publish(job).await;
                redriven += 1;
            }
        }
        for challenge in self.store.overdue_challenges(now, BATCH).await? {
            if self
                .store
                .extend_challenge_deadline(&challenge.id, next_deadline)
                .await?
            {
                info!(challenge_id = challenge.id, "re-driving overdue challenge");
                metrics::counter!("kiln_sweeper_redriven_total", "kind" => "challenge", "step" => "validate")
                    .increment(1);
                self.publish(Job::ValidateChallenge {
                    challenge_id: challenge.id.clone(),
                })
                .await;
                redriven += 1;
            }
        }
        Ok(redriven)
    }

    async fn publish(&self, job: Job) {
        if let Err(e) = self.queue.publish(Message::new(job)).await {
            warn!(error = %e, "sweeper could not publish; will try next pass");
        }
    }

    /// Sweeps every `interval` until cancelled, while this process holds
    /// the sweeper leadership (one sweeper at a time across replicas);
    /// prunes used nonces as well.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        let mut leadership: Option<store::Leadership> = None;
        let mut observer = Observer::new(now_ms());
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if let Some(held) = &mut leadership
                && !held.still_held().await
            {
                warn!("sweeper leadership lost");
                leadership = None;
            }
            leadership = match leadership.take() {
                Some(held) => Some(held),
                None => match self.store.try_leadership(SWEEPER_LOCK).await {
                    Ok(Some(held)) => {
                        info!("this process now leads sweeping");
                        Some(held)
                    }
                    Ok(None) => None,
                    Err(e) => {
                        warn!(error = %e, "leadership check failed");
                        None
                    }
                },
            };
            if leadership.is_none() {
                continue;
            }
            // Before sweeping, so orders the sweep is about to re-drive count
            // as stuck.
            if observer.due() {
                observer.observe(&self).await;
            }
            if let Err(e) = self.sweep(now_ms()).await {
                warn!(error = %e, "sweep failed");
            }
            if let Err(e) = self.store.prune_nonces(now_ms()).await {
                warn!(error = %e, "pruning nonces failed");
            }
        }
    }
}

/// How often the leader refreshes the gauges and reads finished orders.
const OBSERVE_EVERY: Duration = Duration::from_secs(5);
/// Finished orders are read back this far behind the newest one seen, so
/// one committed late (another process's clock, a slow transaction) still
/// counts; ids already counted are skipped.
const LOOKBACK_MS: i64 = 10_000;
const PAGE: i64 = 1_000;
/// Queues whose depth and consumers are gauged: every stage's, and the dead
/// letters (RabbitMQ; always empty in-process).
const OBSERVED_QUEUES: [&str; 5] = [
    proto::queues::VALIDATOR,
    proto::queues::CAA_CHECKER,
    proto::queues::SIGNER,
    proto::queues::CT_SUBMITTER,
    proto::queues::DEAD,
];

/// The leader's periodic measurements (see the module docs).
struct Observer {
    last: Option<Instant>,
    /// The newest completion time seen.
    since: i64,
    /// Orders already counted, with their completion time (pruned once
    /// older than the lookback).
    counted: HashMap<String, i64>,
}

impl Observer {
    fn new(now: i64) -> Self {
        Observer {
            last: None,
            since: now,
            counted: HashMap::new(),
        }
    }

    fn due(&self) -> bool {
        self.last.is_none_or(|at| at.elapsed() >= OBSERVE_EVERY)
    }

    async fn observe(&mut self, sweeper: &Sweeper) {
        self.last = Some(Instant::now());
        let now = now_ms();
        match sweeper.store.processing_counts(now).await {
            Ok(counts) => {
                metrics::gauge!("kiln_orders_processing").set(counts.processing as f64);
                metrics::gauge!("kiln_orders_stuck", "deadline" => "step")
                    .set(counts.past_step_deadline as f64);
                metrics::gauge!("kiln_orders_stuck", "deadline" => "finalize")
                    .set(counts.past_finalize_deadline as f64);
            }
            Err(e) => warn!(error = %e, "counting processing orders failed"),
        }
        if let Err(e) = self.record_completions(&sweeper.store).await {
            warn!(error = %e, "reading finished orders failed");
        }
        for name in OBSERVED_QUEUES {
            let stats = tokio::time::timeout(Duration::from_secs(2), sweeper.queue.stats(name));
            if let Ok(Some(stats)) = stats.await {
                metrics::gauge!("kiln_queue_depth", "queue" => name).set(stats.messages as f64);
                metrics::gauge!("kiln_queue_consumers", "queue" => name)
                    .set(stats.consumers as f64);
            }
        }
    }

    /// Records `kiln_finalize_duration_seconds` once for each order that
    /// finished since the last call.
    async fn record_completions(&mut self, store: &Store) -> Result<(), store::StoreError> {
        let mut cursor = self.since - LOOKBACK_MS;
        for _ in 0..20 {
            let page = store.completed_since(cursor, PAGE).await?;
            let full = page.len() as i64 == PAGE;
            let mut last = cursor;
            for order in page {
                last = order.completed_at;
                if self.counted.insert(order.id, order.completed_at).is_some() {
                    continue;
                }
                let outcome = if order.status == domain::OrderStatus::Valid {
                    "valid"
                } else {
                    "invalid"
                };
                let seconds = (order.completed_at - order.processing_since).max(0) as f64 / 1e3;
                metrics::histogram!("kiln_finalize_duration_seconds", "outcome" => outcome)
                    .record(seconds);
            }
            self.since = self.since.max(last);
            // A page of one millisecond's completions would not move the
            // cursor: stop rather than loop.
            if !full || last <= cursor + 1 {
                break;
            }
            cursor = last - 1;
        }
        let horizon = self.since - LOOKBACK_MS;
        self.counted.retain(|_, at| *at > horizon);
        Ok(())
    }
}
