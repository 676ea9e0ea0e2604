//! External Account Binding keys (RFC 8555 §7.3.4): key ids with an HMAC
//! key each, created by an operator and given to one customer. A key binds
//! one account, once: the binding is a compare-and-set in the same
//! transaction as the account's insert, so of two newAccounts racing with
//! one key exactly one creates an account. A revoked key binds nothing more
//! (an account it already bound stays). Rows are never removed.
//!
//! The store holds no randomness: the caller makes the key id and the HMAC
//! key (`kiln eab create`).

use crate::db::{Row, Script};
use crate::{Account, Result, Store, StoreError, stmt};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EabKey {
    pub key_id: String,
    /// The raw HMAC key; the operator sees it once, at creation.
    pub hmac_key: Vec<u8>,
    /// Whom the key was made for, for the operator.
    pub comment: String,
    pub created_at: i64,
    /// The account the key bound, and when.
    pub account_id: Option<String>,
    pub bound_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl EabKey {
    /// A new, unbound, unrevoked key.
    pub fn new(key_id: String, hmac_key: Vec<u8>, comment: String, created_at: i64) -> Self {
        EabKey {
            key_id,
            hmac_key,
            comment,
            created_at,
            account_id: None,
            bound_at: None,
            revoked_at: None,
        }
    }

    /// Whether a newAccount may still bind it.
    pub fn is_usable(&self) -> bool {
        self.account_id.is_none() && self.revoked_at.is_none()
    }

    fn from_row(r: &Row) -> Result<Self> {
        Ok(EabKey {
            key_id: r.text("key_id")?,
            hmac_key: r.blob("hmac_key")?,
            comment: r.text("comment")?,
            created_at: r.i64("created_at")?,
            account_id: r.opt_text("account_id")?,
            bound_at: r.opt_i64("bound_at")?,
            revoked_at: r.opt_i64("revoked_at")?,
        })
    }
}

/// What became of a newAccount bound with an EAB key.
#[derive(Clone, Debug, PartialEq)]
pub enum EabBinding {
    /// The account was created and the key bound to it.
    Created(Account),
    /// An account already had this account key: nothing was written, the
    /// key stays as it was (an existing account needs no binding).
    Existing(Account),
    /// The key was bound, revoked or missing by the time of the write:
    /// nothing was written.
    KeyUnavailable,
}

impl Store {
    /// Adds a key; false if one with its id exists (the old one stays).
    pub async fn create_eab_key(&self, key: &EabKey) -> Result<bool> {
        let added = self
            .db
            .execute(stmt!(
                "INSERT INTO eab_keys (key_id, hmac_key, comment, created_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (key_id) DO NOTHING",
                &key.key_id,
                key.hmac_key.as_slice(),
                &key.comment,
                key.created_at,
            ))
            .await?;
        Ok(added == 1)
    }

    pub async fn eab_key(&self, key_id: &str) -> Result<Option<EabKey>> {
        let row = self
            .db
            .optional(stmt!("SELECT * FROM eab_keys WHERE key_id = $1", key_id))
            .await?;
        row.map(|r| EabKey::from_row(&r)).transpose()
    }

    /// Every key, oldest first.
    pub async fn eab_keys(&self) -> Result<Vec<EabKey>> {
        let rows = self
            .db
            .all(stmt!("SELECT * FROM eab_keys ORDER BY created_at, key_id"))
            .await?;
        rows.iter().map(EabKey::from_row).collect()
    }

    /// Revokes a key so that it binds no account from now on; false if it
    /// does not exist or was already revoked.
    pub async fn revoke_eab_key(&self, key_id: &str, now: i64) -> Result<bool> {
        let changed = self
            .db
            .execute(stmt!(
                "UPDATE eab_keys SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL",
                key_id,
                now,
            ))
            .await?;
        Ok(changed == 1)
    }

    /// Inserts the account and binds `key_id` to it in one transaction:
    /// both, or neither. The caller has verified the binding's HMAC.
    pub async fn insert_account_with_eab(
        &self,
        account: &Account,
        key_id: &str,
        now: i64,
    ) -> Result<EabBinding> {
        let script = Script::new().require(1, account.insert()).require(
            1,
            stmt!(
                "UPDATE eab_keys SET account_id = $2, bound_at = $3
                 WHERE key_id = $1 AND account_id IS NULL AND revoked_at IS NULL",
                key_id,
                &account.id,
                now,
            ),
        );
        if self.db.run(script).await?.committed() {
            let stored = self
                .account(&account.id)
                .await?
                .ok_or_else(|| StoreError::Corrupt("account vanished after insert".into()))?;
            return Ok(EabBinding::Created(stored));
        }
        // Refused: either the account key has an account already, or the
        // EAB key is no longer free.
        Ok(
            match self.account_by_thumbprint(&account.key_thumbprint).await? {
                Some(existing) => EabBinding::Existing(existing),
                None => EabBinding::KeyUnavailable,
            },
        )
    }
}
