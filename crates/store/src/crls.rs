//! Revocation lists: which revocations a shard's next CRL must carry, and
//! the CRLs the signer signed, as the public HTTP listener serves them.
//!
//! A revocation sets its certificate's `crl_pending` in the same statement
//! that revokes it; a stored CRL clears exactly the pending marks of the
//! entries it lists, as they were read. So a revocation (or a change of its
//! reason) committed while a CRL was being made stays pending for the next
//! one, and nothing the updater has not published is taken as published.

use crate::db::{Row, Script};
use crate::{Result, Store, stmt};

/// Where the public HTTP listener serves CRLs: `{CRL_PATH}{name}`, under the
/// public base URL every leaf's CRL DP names.
pub const CRL_PATH: &str = "/crl/";

/// The name of shard `shard`'s CRL of the issuer `issuer_id` (a
/// [`crate::Issuer::id`]): the issuer's first 16 hex digits (64 bits, plenty
/// to tell a CA's issuers apart), then the shard, as in `1f2e3d4c5b6a7980/3.crl`.
pub fn crl_name(issuer_id: &str, shard: u32) -> String {
    let tag = issuer_id.get(..16).unwrap_or(issuer_id);
    format!("{tag}/{shard}.crl")
}

/// One revoked certificate, as a CRL lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Lowercase hex, as everywhere in the store.
    pub serial: String,
    /// Unix milliseconds.
    pub revoked_at: i64,
    /// RFC 5280 CRLReason; `None` when none was given.
    pub reason: Option<i64>,
    /// Not yet on a stored CRL.
    pub pending: bool,
}

/// The CRL of one shard of one issuer, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCrl {
    pub issuer_id: String,
    pub shard: u32,
    /// Where it is served: `/crl/{name}` on the public listener.
    pub name: String,
    pub number: i64,
    /// Unix milliseconds.
    pub this_update: i64,
    pub next_update: i64,
    pub entries: i64,
    pub der: Vec<u8>,
}

/// What a stored CRL had been when it was made, enough to tell when the
/// next is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlStatus {
    pub shard: u32,
    pub number: i64,
    pub this_update: i64,
    pub next_update: i64,
}

impl Store {
    /// The shards of `issuer_id` that hold a revocation no stored CRL lists.
    pub async fn crl_shards_pending(&self, issuer_id: &str) -> Result<Vec<u32>> {
        let rows = self
            .db
            .all(stmt!(
                "SELECT DISTINCT crl_shard FROM certificates
                 WHERE issuer_id = $1 AND crl_pending = 1",
                issuer_id
            ))
            .await?;
        rows.iter().map(|r| shard(r, "crl_shard")).collect()
    }

    /// Every revoked certificate of the shard that expires after
    /// `expiring_after` (unix ms): a revoked certificate stays listed until
    /// after it expires (BR 4.9.7).
    pub async fn crl_entries(
        &self,
        issuer_id: &str,
        shard: u32,
        expiring_after: i64,
    ) -> Result<Vec<RevokedEntry>> {
        let rows = self
            .db
            .all(stmt!(
                "SELECT serial, revoked_at, revoked_reason, crl_pending FROM certificates
                 WHERE issuer_id = $1 AND crl_shard = $2 AND revoked_at IS NOT NULL
                   AND not_after > $3
                 ORDER BY serial",
                issuer_id,
                i64::from(shard),
                expiring_after,
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RevokedEntry {
                    serial: r.text("serial")?,
                    revoked_at: r.i64("revoked_at")?,
                    reason: r.opt_i64("revoked_reason")?,
                    pending: r.i64("crl_pending")? == 1,
                })
            })
            .collect()
    }

    /// The stored CRLs of `issuer_id`, without their bytes.
    pub async fn crl_statuses(&self, issuer_id: &str) -> Result<Vec<CrlStatus>> {
        let rows = self
            .db
            .all(stmt!(
                "SELECT shard, number, this_update, next_update FROM crls
                 WHERE issuer_id = $1 ORDER BY shard",
                issuer_id
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(CrlStatus {
                    shard: shard(r, "shard")?,
                    number: r.i64("number")?,
                    this_update: r.i64("this_update")?,
                    next_update: r.i64("next_update")?,
                })
            })
            .collect()
    }

    /// Stores `crl` unless a CRL of a number at least as great is stored for
    /// its shard (another updater got there first: false), and clears the
    /// pending mark of each listed entry that is still as it was read.
    pub async fn store_crl(&self, crl: &StoredCrl, listed: &[RevokedEntry]) -> Result<bool> {
        let mut script = Script::new().require(
            1,
            stmt!(
                "INSERT INTO crls (issuer_id, shard, name, number, this_update, next_update,
                                   entries, der)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (issuer_id, shard) DO UPDATE SET
                     name = excluded.name, number = excluded.number,
                     this_update = excluded.this_update, next_update = excluded.next_update,
                     entries = excluded.entries, der = excluded.der
                 WHERE crls.number < excluded.number",
                &crl.issuer_id,
                i64::from(crl.shard),
                &crl.name,
                crl.number,
                crl.this_update,
                crl.next_update,
                crl.entries,
                crl.der.as_slice(),
            ),
        );
        for entry in listed.iter().filter(|e| e.pending) {
            // Only the revocation this CRL lists: a reason changed since
            // stays pending.
            script = script.then(stmt!(
                "UPDATE certificates SET crl_pending = 0
                 WHERE serial = $1 AND crl_pending = 1 AND revoked_at = $2
                   AND COALESCE(revoked_reason, -1) = $3",
                &entry.serial,
                entry.revoked_at,
                entry.reason.unwrap_or(-1),
            ));
        }
        Ok(self.db.run(script).await?.committed())
    }

    /// The CRL served as `/crl/{name}`.
    pub async fn crl_named(&self, name: &str) -> Result<Option<StoredCrl>> {
        let row = self
            .db
            .optional(stmt!("SELECT * FROM crls WHERE name = $1", name))
            .await?;
        row.map(|r| {
            Ok(StoredCrl {
                issuer_id: r.text("issuer_id")?,
                shard: shard(&r, "shard")?,
                name: r.text("name")?,
                number: r.i64("number")?,
                this_update: r.i64("this_update")?,
                next_update: r.i64("next_update")?,
                entries: r.i64("entries")?,
                der: r.blob("der")?,
            })
        })
        .transpose()
    }
}

fn shard(r: &Row, column: &str) -> Result<u32> {
    let value = r.i64(column)?;
    u32::try_from(value)
        .map_err(|_| crate::StoreError::Corrupt(format!("CRL shard {value} out of range")))
}
