//! Shared secrets and used nonces: what lets any api replica issue and check
//! any replay nonce (invariant 10). Nonces are authenticated with a secret
//! every replica reads from here; a used one is recorded until it would be
//! refused as expired anyway.

use crate::{Account, Backend, Result, Store, StoreError, stmt};

impl Store {
    /// The named secret, created from `init` on first use. Every replica
    /// reads the same value, so any api replica can check any nonce.
    pub async fn secret(&self, name: &str, init: &[u8]) -> Result<Vec<u8>> {
        self.db
            .execute(stmt!(
                "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                name,
                init,
            ))
            .await?;
        let row = self
            .db
            .optional(stmt!("SELECT value FROM secrets WHERE name = $1", name))
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("secret {name} vanished after insert")))?;
        Ok(row.blob("value")?)
    }

    /// Marks a nonce used. False when it was used before: a replay.
    pub async fn consume_nonce(&self, nonce: &str, expires_at: i64) -> Result<bool> {
        let inserted = self
            .db
            .execute(stmt!(
                "INSERT INTO used_nonces (nonce, expires_at) VALUES ($1, $2)
                 ON CONFLICT (nonce) DO NOTHING",
                nonce,
                expires_at,
            ))
            .await?;
        Ok(inserted == 1)
    }

    /// Marks a nonce used (false: a replay) and reads the account of the
    /// request that carried it. On PostgreSQL that is one statement, a
    /// data-modifying CTE: every `kid` request did both, and two round
    /// trips per request were a sixth of the database's work per order in
    /// `bench/scenario2.sh`. SQLite cannot write in a CTE; there it is the
    /// two statements.
    pub async fn consume_nonce_reading_account(
        &self,
        nonce: &str,
        expires_at: i64,
        account_id: &str,
    ) -> Result<(bool, Option<Account>)> {
        if self.backend() != Backend::Postgres {
            let fresh = self.consume_nonce(nonce, expires_at).await?;
            return Ok((fresh, self.account(account_id).await?));
        }
        let row = self
            .db
            .optional(stmt!(
                "WITH used AS (
                   INSERT INTO used_nonces (nonce, expires_at) VALUES ($1, $2)
                   ON CONFLICT (nonce) DO NOTHING RETURNING 1
                 )
                 SELECT (SELECT count(*) FROM used) AS fresh, accounts.*
                 FROM (SELECT 1) AS one LEFT JOIN accounts ON accounts.id = $3",
                nonce,
                expires_at,
                account_id,
            ))
            .await?
            .ok_or_else(|| StoreError::Corrupt("the nonce CTE returned no row".into()))?;
        crate::db::count_writes(1, 1);
        let account = match row.opt_text("id")? {
            Some(_) => Some(Account::from_row(&row)?),
            None => None,
        };
        Ok((row.i64("fresh")? == 1, account))
    }

    /// Forgets used nonces that would be refused as expired anyway.
    pub async fn prune_nonces(&self, now: i64) -> Result<u64> {
        Ok(self
            .db
            .execute(stmt!("DELETE FROM used_nonces WHERE expires_at < $1", now))
            .await?)
    }
}
