//! Queries over orders and challenges in flight: what the sweeper re-drives
//! (work past its deadline, invariants 1 and 6), its gauges (processing
//! counts, finished orders and their latencies) and the recent finalize
//! latencies that Retry-After and the hybrid mode's budget are based on.

use crate::{Challenge, Order, Result, Store, StoreError, parse, stmt};
use domain::{FinalizeStep, OrderStatus};

/// Finalizations in flight, for the sweeper's gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessingCounts {
    pub processing: i64,
    pub past_step_deadline: i64,
    pub past_finalize_deadline: i64,
}

/// An order that finished finalizing (`valid` or `invalid`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedOrder {
    pub id: String,
    pub status: OrderStatus,
    pub processing_since: i64,
    pub completed_at: i64,
}

/// The newest finalized completions, read down `orders_by_completion`; the
/// `valid` ones are kept in Rust. Filtering on `status` in SQL made SQLite
/// choose the `(status, step_deadline)` index instead and sort every valid
/// order ever issued, every five seconds, in every api replica.
pub(crate) const RECENT_COMPLETIONS: &str =
    "SELECT status, completed_at - processing_since AS latency FROM orders
     WHERE completed_at IS NOT NULL AND processing_since IS NOT NULL
     ORDER BY completed_at DESC LIMIT $1";

impl Store {
    /// The finalize→done latencies (ms) of the valid orders among the
    /// `limit` most recently completed, newest first: the basis of
    /// Retry-After and of the hybrid mode's waiting budget.
    pub async fn recent_finalize_latencies(&self, limit: i64) -> Result<Vec<i64>> {
        let rows = self.db.all(stmt!(RECENT_COMPLETIONS, limit)).await?;
        let mut latencies = Vec::with_capacity(rows.len());
        for r in &rows {
            if r.text("status")? == OrderStatus::Valid.as_str() {
                latencies.push(r.i64("latency")?);
            }
        }
        Ok(latencies)
    }

    /// Processing orders right now, and how many of them are past their step
    /// deadline or their finalize deadline (the sweeper's gauges; served by
    /// the `(status, step_deadline)` index).
    pub async fn processing_counts(&self, now: i64) -> Result<ProcessingCounts> {
        let row = self
            .db
            .optional(stmt!(
                "SELECT COUNT(*) AS processing,
                        COALESCE(SUM(CASE WHEN step_deadline < $1 THEN 1 ELSE 0 END), 0) AS past_step,
                        COALESCE(SUM(CASE WHEN finalize_deadline < $1 THEN 1 ELSE 0 END), 0)
                          AS past_finalize
                 FROM orders WHERE status = 'processing'",
                now
            ))
            .await?
            .ok_or_else(|| StoreError::Corrupt("COUNT returned no row".into()))?;
        Ok(ProcessingCounts {
            processing: row.opt_i64("processing")?.unwrap_or(0),
            past_step_deadline: row.opt_i64("past_step")?.unwrap_or(0),
            past_finalize_deadline: row.opt_i64("past_finalize")?.unwrap_or(0),
        })
    }

    /// Finalized orders that became `valid` or `invalid` after `since`
    /// (unix ms), oldest first: the sweeper's finalize→done latencies.
    pub async fn completed_since(&self, since: i64, limit: i64) -> Result<Vec<CompletedOrder>> {
        let rows = self
            .db
            .all(stmt!(
                "SELECT id, status, processing_since, completed_at FROM orders
                 WHERE completed_at > $1 AND processing_since IS NOT NULL
                 ORDER BY completed_at LIMIT $2",
                since,
                limit,
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(CompletedOrder {
                    id: r.text("id")?,
                    status: parse::<OrderStatus>(r, "status")?,
                    processing_since: r.i64("processing_since")?,
                    completed_at: r.i64("completed_at")?,
                })
            })
            .collect()
    }

    /// Processing orders whose current step is past its deadline.
    pub async fn overdue_orders(&self, now: i64, limit: i64) -> Result<Vec<Order>> {
        let rows = self
            .db
            .all(stmt!(
                "SELECT * FROM orders WHERE status = 'processing' AND step_deadline < $1
                 ORDER BY step_deadline LIMIT $2",
                now,
                limit,
            ))
            .await?;
        rows.iter().map(Order::from_row).collect()
    }

    /// Pushes an order's step deadline forward after re-driving it; false if
    /// the order moved on meanwhile.
    pub async fn extend_step_deadline(
        &self,
        order_id: &str,
        step: FinalizeStep,
        deadline: i64,
    ) -> Result<bool> {
        let changed = self
            .db
            .execute(stmt!(
                "UPDATE orders SET step_deadline = $3
                 WHERE id = $1 AND status = 'processing' AND step = $2",
                order_id,
                step.as_str(),
                deadline,
            ))
            .await?;
        Ok(changed == 1)
    }

    /// Challenges in `processing` past their deadline.
    pub async fn overdue_challenges(&self, now: i64, limit: i64) -> Result<Vec<Challenge>> {
        let rows = self
            .db
            .all(stmt!(
                "SELECT * FROM challenges WHERE status = 'processing' AND deadline < $1
                 ORDER BY deadline LIMIT $2",
                now,
                limit,
            ))
            .await?;
        rows.iter().map(Challenge::from_row).collect()
    }

    pub async fn extend_challenge_deadline(
        &self,
        challenge_id: &str,
        deadline: i64,
    ) -> Result<bool> {
        let changed = self
            .db
            .execute(stmt!(
                "UPDATE challenges SET deadline = $2 WHERE id = $1 AND status = 'processing'",
                challenge_id,
                deadline,
            ))
            .await?;
        Ok(changed == 1)
    }
}
