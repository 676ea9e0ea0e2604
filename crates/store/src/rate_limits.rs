//! Rate-limit events: one row per counted action (an account created from
//! an address, an order placed, a certificate requested for a registered
//! domain, a validation failed …), in the shared database, so that every
//! api replica counts the same events and a limit holds across them
//! (invariant 10). The api decides what is limited and by how much
//! (`api::rate_limits`); this module only records and counts.

use crate::db::Row;
use crate::{Result, Store, stmt};

/// The limit names stored in `rate_limit_events.limit_name`.
pub mod limit {
    pub const NEW_ACCOUNTS: &str = "new_accounts";
    pub const NEW_ORDERS: &str = "new_orders";
    pub const CERTIFICATES_PER_DOMAIN: &str = "certificates_per_domain";
    pub const DUPLICATE_CERTIFICATES: &str = "duplicate_certificates";
    /// Recorded by the store itself, in the transaction that makes a
    /// challenge `invalid` (`Store::finish_challenge`), whether or not the
    /// limit is enabled: failures are rare, and a limit switched on later
    /// then sees the past hour.
    pub const FAILED_VALIDATIONS: &str = "failed_validations";
}

/// The bucket of a failed validation: the account and the authorization's
/// name. `finish_challenge` builds the same text in SQL
/// (`account_id || ' ' || identifier`).
pub fn failed_validation_bucket(account_id: &str, identifier: &str) -> String {
    format!("{account_id} {identifier}")
}

impl Store {
    /// Records one event per bucket for `limit` at `at`, in one write.
    pub async fn record_rate_limit_events(
        &self,
        limit: &str,
        buckets: &[String],
        at: i64,
    ) -> Result<()> {
        let mut script = crate::db::Script::new();
        for bucket in buckets {
            script = script.then(stmt!(
                "INSERT INTO rate_limit_events (limit_name, bucket, at_ms) VALUES ($1, $2, $3)",
                limit,
                bucket,
                at,
            ));
        }
        self.db.run(script).await?;
        Ok(())
    }

    /// The times of `limit`'s newest events for `bucket` after `since`,
    /// newest first, at most `max`: `max` of them means the limit is
    /// reached, and the last one is the event whose expiry frees a place.
    pub async fn recent_rate_limit_events(
        &self,
        limit: &str,
        bucket: &str,
        since: i64,
        max: u32,
    ) -> Result<Vec<i64>> {
        let rows = self
            .db
            .all(stmt!(
                "SELECT at_ms FROM rate_limit_events
                 WHERE limit_name = $1 AND bucket = $2 AND at_ms > $3
                 ORDER BY at_ms DESC LIMIT $4",
                limit,
                bucket,
                since,
                i64::from(max),
            ))
            .await?;
        rows.iter().map(|r: &Row| Ok(r.i64("at_ms")?)).collect()
    }

    /// Forgets events at or before `before` (older than every window).
    pub async fn prune_rate_limit_events(&self, before: i64) -> Result<u64> {
        Ok(self
            .db
            .execute(stmt!(
                "DELETE FROM rate_limit_events WHERE at_ms <= $1",
                before
            ))
            .await?)
    }

    /// The account's authorizations still `pending` and not expired.
    pub async fn pending_authz_count(&self, account_id: &str, now: i64) -> Result<i64> {
        let row = self
            .db
            .optional(stmt!(
                "SELECT COUNT(*) AS n FROM authzs
                 WHERE account_id = $1 AND status = 'pending' AND expires_at > $2",
                account_id,
                now,
            ))
            .await?;
        match row {
            Some(r) => Ok(r.i64("n")?),
            None => Ok(0),
        }
    }
}
