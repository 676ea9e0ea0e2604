//! Accounts (RFC 8555 §7.3): one per key, found by the key's thumbprint;
//! contact updates, key change and deactivation are compare-and-set on a
//! `valid` account; deactivation also cancels the account's pending work.

use crate::db::{Row, Script, Stmt};
use crate::{Result, Store, StoreError, json, parse, parse_json, stmt};
use domain::{AccountStatus, Problem, ProblemKind};

#[derive(Clone, Debug, PartialEq)]
pub struct Account {
    pub id: String,
    /// RFC 7638 thumbprint of `jwk`; unique, so one key is one account.
    pub key_thumbprint: String,
    /// The public key as canonical JWK JSON.
    pub jwk: String,
    pub contact: Vec<String>,
    pub status: AccountStatus,
    pub created_at: i64,
}

impl Store {
    /// Inserts the account unless one exists for its key; returns the stored
    /// one and whether it was created now.
    pub async fn insert_account(&self, account: &Account) -> Result<(Account, bool)> {
        let inserted = self.db.execute(account.insert()).await?;
        let stored = self
            .account_by_thumbprint(&account.key_thumbprint)
            .await?
            .ok_or_else(|| StoreError::Corrupt("account vanished after insert".into()))?;
        Ok((stored, inserted == 1))
    }

    pub async fn account(&self, id: &str) -> Result<Option<Account>> {
        let row = self
            .db
            .optional(stmt!("SELECT * FROM accounts WHERE id = $1", id))
            .await?;
        row.map(|r| Account::from_row(&r)).transpose()
    }

    pub async fn account_by_thumbprint(&self, thumbprint: &str) -> Result<Option<Account>> {
        let row = self
            .db
            .optional(stmt!(
                "SELECT * FROM accounts WHERE key_thumbprint = $1",
                thumbprint
            ))
            .await?;
        row.map(|r| Account::from_row(&r)).transpose()
    }

    pub async fn update_account_contact(&self, id: &str, contact: &[String]) -> Result<bool> {
        let changed = self
            .db
            .execute(stmt!(
                "UPDATE accounts SET contact = $2 WHERE id = $1 AND status = 'valid'",
                id,
                json(&contact),
            ))
            .await?;
        Ok(changed == 1)
    }

    /// valid → deactivated (RFC 8555 §7.3.6), cancelling in the same
    /// transaction what the account's key had started: its pending
    /// authorizations become `deactivated` and its pending or ready orders
    /// `invalid`, with an `unauthorized` problem saying why. Orders already
    /// `processing` finish: their certificate is being made. False if the
    /// account was not `valid` (nothing is changed then).
    pub async fn deactivate_account(&self, id: &str) -> Result<bool> {
        let why = Problem::new(
            ProblemKind::Unauthorized,
            "the account was deactivated before this order was finalized",
        );
        // Through the account's orders (`orders_by_account`, then
        // `authzs_by_order`): authzs have no index by account. Authorizations
        // before orders, the order `finish_challenge` locks rows in.
        let script = Script::new()
            .require(
                1,
                stmt!(
                    "UPDATE accounts SET status = 'deactivated' WHERE id = $1 AND status = 'valid'",
                    id
                ),
            )
            .then(stmt!(
                "UPDATE authzs SET status = 'deactivated'
                 WHERE status = 'pending'
                   AND order_id IN (SELECT o.id FROM orders o WHERE o.account_id = $1)",
                id
            ))
            .then(stmt!(
                "UPDATE orders SET status = 'invalid', error = $2
                 WHERE account_id = $1 AND status IN ('pending', 'ready')",
                id,
                json(&why),
            ));
        Ok(self.db.run(script).await?.committed())
    }

    /// Replaces the account key if it is still `old_thumbprint`. A new key
    /// already used by another account is a `Conflict`.
    pub async fn change_account_key(
        &self,
        id: &str,
        old_thumbprint: &str,
        new_thumbprint: &str,
        new_jwk: &str,
    ) -> Result<bool> {
        if let Some(other) = self.account_by_thumbprint(new_thumbprint).await? {
            return Err(StoreError::Conflict(other.id));
        }
        let changed = self
            .db
            .execute(stmt!(
                "UPDATE accounts SET key_thumbprint = $3, jwk = $4
                 WHERE id = $1 AND key_thumbprint = $2 AND status = 'valid'",
                id,
                old_thumbprint,
                new_thumbprint,
                new_jwk,
            ))
            .await;
        match changed {
            Ok(changed) => Ok(changed == 1),
            Err(e) if e.is_unique_violation() => Err(StoreError::Conflict("key in use".into())),
            Err(e) => Err(e.into()),
        }
    }
}

impl Account {
    /// The insert, a no-op when an account already has the key.
    pub(crate) fn insert(&self) -> Stmt {
        stmt!(
            "INSERT INTO accounts (id, key_thumbprint, jwk, contact, status, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key_thumbprint) DO NOTHING",
            &self.id,
            &self.key_thumbprint,
            &self.jwk,
            json(&self.contact),
            self.status.as_str(),
            self.created_at,
        )
    }

    pub(crate) fn from_row(r: &Row) -> Result<Self> {
        Ok(Account {
            id: r.text("id")?,
            key_thumbprint: r.text("key_thumbprint")?,
            jwk: r.text("jwk")?,
            contact: parse_json(r, "contact")?.unwrap_or_default(),
            status: parse::<AccountStatus>(r, "status")?,
            created_at: r.i64("created_at")?,
        })
    }
}
