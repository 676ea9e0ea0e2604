//! Shared secrets and used nonces: what lets any api replica issue and check
//! any replay nonce (invariant 10). Nonces are authenticated with a secret
//! every replica reads from here; a used one is recorded until it would be
//! refused as expired anyway.

use crate::{Result, Store};
use sqlx::Row;

impl Store {
    /// The named secret, created from `init` on first use. Every replica
    /// reads the same value, so any api replica can check any nonce.
    pub async fn secret(&self, name: &str, init: &[u8]) -> Result<Vec<u8>> {
        sqlx::query(
            "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(init.to_vec())
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT value FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("value")?)
    }

    /// Marks a nonce used. False when it was used before: a replay.
    pub async fn consume_nonce(&self, nonce: &str, expires_at: i64) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO used_nonces (nonce, expires_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING",
        )
        .bind(nonce)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets used nonces that would be refused as expired anyway.
    pub async fn prune_nonces(&self, now: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM used_nonces WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
