//! Accounts (RFC 8555 §7.3): one per key, found by the key's thumbprint;
//! contact updates, key change and deactivation are compare-and-set on a
//! `valid` account.

use crate::{Result, Store, StoreError, is_unique_violation, json, parse, parse_json};
use domain::AccountStatus;
use sqlx::Row;
use sqlx::any::AnyRow;

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
        let done = sqlx::query(
            "INSERT INTO accounts (id, key_thumbprint, jwk, contact, status, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key_thumbprint) DO NOTHING",
        )
        .bind(&account.id)
        .bind(&account.key_thumbprint)
        .bind(&account.jwk)
        .bind(json(&account.contact))
        .bind(account.status.as_str())
        .bind(account.created_at)
        .execute(&self.pool)
        .await?;
        let stored = self
            .account_by_thumbprint(&account.key_thumbprint)
            .await?
            .ok_or_else(|| StoreError::Corrupt("account vanished after insert".into()))?;
        Ok((stored, done.rows_affected() == 1))
    }

    pub async fn account(&self, id: &str) -> Result<Option<Account>> {
        let row = sqlx::query("SELECT * FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Account::from_row(&r)).transpose()
    }

    pub async fn account_by_thumbprint(&self, thumbprint: &str) -> Result<Option<Account>> {
        let row = sqlx::query("SELECT * FROM accounts WHERE key_thumbprint = $1")
            .bind(thumbprint)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Account::from_row(&r)).transpose()
    }

    pub async fn update_account_contact(&self, id: &str, contact: &[String]) -> Result<bool> {
        let done =
            sqlx::query("UPDATE accounts SET contact = $2 WHERE id = $1 AND status = 'valid'")
                .bind(id)
                .bind(json(&contact))
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn deactivate_account(&self, id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE accounts SET status = 'deactivated' WHERE id = $1 AND status = 'valid'",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
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
        let done = sqlx::query(
            "UPDATE accounts SET key_thumbprint = $3, jwk = $4
             WHERE id = $1 AND key_thumbprint = $2 AND status = 'valid'",
        )
        .bind(id)
        .bind(old_thumbprint)
        .bind(new_thumbprint)
        .bind(new_jwk)
        .execute(&self.pool)
        .await;
        match done {
            Ok(done) => Ok(done.rows_affected() == 1),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict("key in use".into())),
            Err(e) => Err(e.into()),
        }
    }
}

impl Account {
    fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(Account {
            id: r.try_get("id")?,
            key_thumbprint: r.try_get("key_thumbprint")?,
            jwk: r.try_get("jwk")?,
            contact: parse_json(r, "contact")?.unwrap_or_default(),
            status: parse::<AccountStatus>(r, "status")?,
            created_at: r.try_get("created_at")?,
        })
    }
}
