//! Re-drives work the queue may have lost (invariant 1 and 6): a processing
//! order whose step is past its deadline gets its step's job again, or ends
//! `invalid` once the whole finalization is past its deadline; a challenge
//! stuck in `processing` is validated again.

use proto::Job;
use queue::{Message, Queue, job_for_step};
use std::sync::Arc;
use std::time::Duration;
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
            let Some(step) = order.step else { continue };
            if order.finalize_deadline.is_some_and(|d| d < now_ms()) {
                warn!(order_id = order.id, %step, "finalization deadline passed");
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
                self.publish(job_for_step(step, &order.id)).await;
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
            if let Err(e) = self.sweep(now_ms()).await {
                warn!(error = %e, "sweep failed");
            }
            if let Err(e) = self.store.prune_nonces(now_ms()).await {
                warn!(error = %e, "pruning nonces failed");
            }
        }
    }
}
