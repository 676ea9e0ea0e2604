//! Client compatibility: for each finalize answered `processing`, who the
//! client was and whether it came back to poll and download its
//! certificate — the data behind `kiln report compat`, as Let's Encrypt
//! gathered it in its brownouts.

use crate::db::{Row, Stmt};
use crate::{Result, Store, stmt};

/// A finalize answered `processing`, and what the client did next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalizeObservation {
    pub order_id: String,
    pub account_id: String,
    pub user_agent: String,
    pub client_product: String,
    pub client_version: String,
    /// The finalize mode in force (async, hybrid, …).
    pub mode: String,
    pub finalized_at: i64,
    pub first_poll_at: Option<i64>,
    pub polls: i64,
    pub downloaded_at: Option<i64>,
}

impl Store {
    /// Records a finalize that was answered `processing`.
    pub async fn record_finalize_observation(&self, o: &FinalizeObservation) -> Result<()> {
        self.db.execute(o.insert()).await?;
        Ok(())
    }

    /// The client polled an order it finalized (no-op for unobserved orders).
    pub async fn observe_poll(&self, order_id: &str, now: i64) -> Result<()> {
        self.db
            .execute(stmt!(
                "UPDATE finalize_observations
                 SET polls = polls + 1, first_poll_at = COALESCE(first_poll_at, $2)
                 WHERE order_id = $1",
                order_id,
                now,
            ))
            .await?;
        Ok(())
    }

    /// The client downloaded the certificate of an order it finalized.
    pub async fn observe_download(&self, order_id: &str, now: i64) -> Result<()> {
        self.db
            .execute(stmt!(
                "UPDATE finalize_observations SET downloaded_at = COALESCE(downloaded_at, $2)
                 WHERE order_id = $1",
                order_id,
                now,
            ))
            .await?;
        Ok(())
    }

    /// How often the client polled an order after finalize (0 if it was
    /// not observed).
    pub async fn polls_after_finalize(&self, order_id: &str) -> Result<i64> {
        let row = self
            .db
            .optional(stmt!(
                "SELECT polls FROM finalize_observations WHERE order_id = $1",
                order_id
            ))
            .await?;
        Ok(match row {
            Some(r) => r.i64("polls")?,
            None => 0,
        })
    }

    /// Every observation of finalizes at or after `since`, oldest first.
    pub async fn finalize_observations(&self, since: i64) -> Result<Vec<FinalizeObservation>> {
        let rows = self
            .db
            .all(stmt!(
                "SELECT * FROM finalize_observations WHERE finalized_at >= $1 ORDER BY finalized_at",
                since
            ))
            .await?;
        rows.iter().map(FinalizeObservation::from_row).collect()
    }
}

impl FinalizeObservation {
    /// The row's INSERT (none if the order is observed already).
    pub(crate) fn insert(&self) -> Stmt {
        stmt!(
            "INSERT INTO finalize_observations
               (order_id, account_id, user_agent, client_product, client_version, mode,
                finalized_at, polls)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0) ON CONFLICT (order_id) DO NOTHING",
            &self.order_id,
            &self.account_id,
            &self.user_agent,
            &self.client_product,
            &self.client_version,
            &self.mode,
            self.finalized_at,
        )
    }

    fn from_row(r: &Row) -> Result<Self> {
        Ok(FinalizeObservation {
            order_id: r.text("order_id")?,
            account_id: r.text("account_id")?,
            user_agent: r.text("user_agent")?,
            client_product: r.text("client_product")?,
            client_version: r.text("client_version")?,
            mode: r.text("mode")?,
            finalized_at: r.i64("finalized_at")?,
            first_poll_at: r.opt_i64("first_poll_at")?,
            polls: r.i64("polls")?,
            downloaded_at: r.opt_i64("downloaded_at")?,
        })
    }
}
