//! Reads for `kiln audit`: every order, with its authorizations and its
//! certificate rows, a page at a time, so that a database of millions of
//! rows is read in bounded memory. Rows come back as plain structs with
//! their stored text (states, profiles) unparsed: an audit reports what is
//! there, including values this build does not know, rather than failing
//! on them.
//!
//! Orders are paged by primary key (`id > $after ORDER BY id LIMIT n`);
//! the authorizations and certificates of one page are read by the range
//! of its ids (`order_id > $after AND order_id <= $last`), down the
//! `authzs_by_order` and `certificates_by_order` indexes. With `since`,
//! the page's orders are scattered over the whole id range, so their
//! children are read order by order instead. Pages are separate
//! statements: on a live database the audit sees each page as of its read.

use crate::db::Row;
use crate::{DeadLetterRecord, Result, Store, StoreError, stmt};
use domain::Identifier;

/// An order as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditOrder {
    pub id: String,
    pub account_id: String,
    pub status: String,
    pub step: Option<String>,
    pub identifiers: Vec<Identifier>,
    pub created_at: i64,
    pub expires_at: i64,
    pub processing_since: Option<i64>,
    pub finalize_deadline: Option<i64>,
    /// When the current step's stage must have acted, or the sweeper
    /// re-drives the step.
    pub step_deadline: Option<i64>,
    pub certificate_serial: Option<String>,
    /// When the order left check-caa (the finalize-time CAA recheck).
    pub caa_checked_at: Option<i64>,
    pub precert_at: Option<i64>,
    pub scts_at: Option<i64>,
    pub completed_at: Option<i64>,
    /// `None` for orders made before profiles (`classic`).
    pub profile: Option<String>,
}

/// An authorization as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditAuthz {
    pub id: String,
    pub order_id: String,
    pub account_id: String,
    /// The base name, without `*.`.
    pub identifier: String,
    pub wildcard: bool,
    pub status: String,
    pub expires_at: i64,
    /// When a challenge validated it, which is also when CAA was checked
    /// for it (the validator checks CAA right after the challenge).
    pub validated_at: Option<i64>,
}

/// A certificate row as stored, with what the audit needs from the rows
/// it names: the ordering account's key and whether the recorded key is
/// blocked.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditCertificate {
    pub serial: String,
    pub order_id: String,
    pub account_id: String,
    pub state: String,
    pub not_before: i64,
    pub not_after: i64,
    pub created_at: i64,
    pub precert_der: Option<Vec<u8>>,
    pub sct_list: Option<Vec<u8>>,
    pub final_der: Option<Vec<u8>>,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<i64>,
    pub issuer_id: Option<String>,
    pub crl_shard: i64,
    pub crl_pending: bool,
    /// The key digest recorded when the serial was claimed.
    pub spki_sha256: Option<String>,
    /// The account's current JWK (`None`: no such account).
    pub account_jwk: Option<String>,
    /// When the recorded key was put on the blocklist, if it is on it.
    pub key_blocked_at: Option<i64>,
}

/// A challenge still `processing` (its validation job not yet applied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditChallenge {
    pub id: String,
    pub order_id: String,
    /// When the validator must have decided, or the sweeper re-drives it.
    pub deadline: Option<i64>,
}

/// A certificate row whose order does not exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrphanCertificate {
    pub serial: String,
    pub order_id: String,
}

macro_rules! audit_certificate_select {
    () => {
        "SELECT c.serial, c.order_id, c.account_id, c.state, c.not_before, c.not_after,
                c.created_at, c.precert_der, c.sct_list, c.final_der, c.revoked_at,
                c.revoked_reason, c.issuer_id, c.crl_shard, c.crl_pending, c.spki_sha256,
                a.jwk AS account_jwk, b.created_at AS key_blocked_at
         FROM certificates c
         LEFT JOIN accounts a ON a.id = c.account_id
         LEFT JOIN blocked_keys b ON b.spki_sha256 = c.spki_sha256 "
    };
}

/// An order takes part in a `since` run if it was made, finalized or
/// finished since, or is still processing (its certificates may be newer
/// than its finalize).
const ORDERS_PAGE: &str = "SELECT * FROM orders
     WHERE id > $1 AND (created_at >= $2 OR processing_since >= $2 OR completed_at >= $2
                        OR status = 'processing')
     ORDER BY id LIMIT $3";

impl Store {
    /// Up to `limit` orders with ids after `after` (`""` for the first
    /// page), in id order, that take part in a run over what happened at
    /// or after `since` (unix ms; `i64::MIN` for everything).
    pub async fn audit_orders_page(
        &self,
        after: &str,
        since: i64,
        limit: i64,
    ) -> Result<Vec<AuditOrder>> {
        let rows = self.db.all(stmt!(ORDERS_PAGE, after, since, limit)).await?;
        rows.iter().map(AuditOrder::from_row).collect()
    }

    /// The authorizations of every order whose id is after `after` and at
    /// most `last`.
    pub async fn audit_authzs_in(&self, after: &str, last: &str) -> Result<Vec<AuditAuthz>> {
        let rows = self
            .db
            .all(stmt!(
                "SELECT * FROM authzs WHERE order_id > $1 AND order_id <= $2",
                after,
                last
            ))
            .await?;
        rows.iter().map(AuditAuthz::from_row).collect()
    }

    /// The authorizations of one order.
    pub async fn audit_authzs_of(&self, order_id: &str) -> Result<Vec<AuditAuthz>> {
        let rows = self
            .db
            .all(stmt!("SELECT * FROM authzs WHERE order_id = $1", order_id))
            .await?;
        rows.iter().map(AuditAuthz::from_row).collect()
    }

    /// The certificate rows of every order whose id is after `after` and
    /// at most `last`.
    pub async fn audit_certificates_in(
        &self,
        after: &str,
        last: &str,
    ) -> Result<Vec<AuditCertificate>> {
        let rows = self
            .db
            .all(stmt!(
                concat!(
                    audit_certificate_select!(),
                    "WHERE c.order_id > $1 AND c.order_id <= $2"
                ),
                after,
                last
            ))
            .await?;
        rows.iter().map(AuditCertificate::from_row).collect()
    }

    /// The certificate rows of one order.
    pub async fn audit_certificates_of(&self, order_id: &str) -> Result<Vec<AuditCertificate>> {
        let rows = self
            .db
            .all(stmt!(
                concat!(audit_certificate_select!(), "WHERE c.order_id = $1"),
                order_id
            ))
            .await?;
        rows.iter().map(AuditCertificate::from_row).collect()
    }

    /// The dead letters naming an order whose id is after `after` and at
    /// most `last`.
    pub async fn audit_dead_letters_in(
        &self,
        after: &str,
        last: &str,
    ) -> Result<Vec<DeadLetterRecord>> {
        let rows = self
            .db
            .all(stmt!(
                "SELECT * FROM dead_letters WHERE subject_id > $1 AND subject_id <= $2
                 ORDER BY id",
                after,
                last
            ))
            .await?;
        rows.iter().map(DeadLetterRecord::from_row).collect()
    }

    /// Every dead letter recorded at or after `since`, and how many of
    /// them name no order or challenge that exists (a poison message, or
    /// one no build could read).
    pub async fn audit_dead_letter_counts(&self, since: i64) -> Result<(i64, i64)> {
        let row = self
            .db
            .optional(stmt!(
                "SELECT COUNT(*) AS total,
                        COALESCE(SUM(CASE WHEN NOT EXISTS (SELECT 1 FROM orders o
                                                           WHERE o.id = d.subject_id)
                                            AND NOT EXISTS (SELECT 1 FROM challenges c
                                                            WHERE c.id = d.subject_id)
                                          THEN 1 ELSE 0 END), 0) AS naming_nothing
                 FROM dead_letters d WHERE d.dead_at >= $1",
                since
            ))
            .await?
            .ok_or_else(|| StoreError::Corrupt("COUNT returned no row".into()))?;
        Ok((row.i64("total")?, row.i64("naming_nothing")?))
    }

    /// Up to `limit` challenges still `processing` whose deadline passed
    /// before `before` (down the `challenges_by_deadline` index).
    pub async fn audit_overdue_challenges(
        &self,
        before: i64,
        limit: i64,
    ) -> Result<Vec<AuditChallenge>> {
        let rows = self
            .db
            .all(stmt!(
                "SELECT c.id, a.order_id, c.deadline FROM challenges c
                 JOIN authzs a ON a.id = c.authz_id
                 WHERE c.status = 'processing' AND (c.deadline IS NULL OR c.deadline < $1)
                 ORDER BY c.id LIMIT $2",
                before,
                limit
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditChallenge {
                    id: r.text("id")?,
                    order_id: r.text("order_id")?,
                    deadline: r.opt_i64("deadline")?,
                })
            })
            .collect()
    }

    /// Up to `limit` certificate rows created at or after `since` whose
    /// order does not exist (a scan probing the orders' primary key).
    pub async fn audit_orphan_certificates(
        &self,
        since: i64,
        limit: i64,
    ) -> Result<Vec<OrphanCertificate>> {
        let rows = self
            .db
            .all(stmt!(
                "SELECT c.serial, c.order_id FROM certificates c
                 WHERE c.created_at >= $1
                   AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = c.order_id)
                 ORDER BY c.serial LIMIT $2",
                since,
                limit
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OrphanCertificate {
                    serial: r.text("serial")?,
                    order_id: r.text("order_id")?,
                })
            })
            .collect()
    }

    /// When the key of digest `spki_sha256` was blocked, if it is.
    pub async fn audit_key_blocked_at(&self, spki_sha256: &str) -> Result<Option<i64>> {
        let row = self
            .db
            .optional(stmt!(
                "SELECT created_at FROM blocked_keys WHERE spki_sha256 = $1",
                spki_sha256
            ))
            .await?;
        Ok(row.map(|r| r.i64("created_at")).transpose()?)
    }
}

impl AuditOrder {
    fn from_row(r: &Row) -> Result<Self> {
        let identifiers = r.text("identifiers")?;
        Ok(AuditOrder {
            identifiers: serde_json::from_str(&identifiers)
                .map_err(|e| StoreError::Corrupt(format!("identifiers: {e}")))?,
            id: r.text("id")?,
            account_id: r.text("account_id")?,
            status: r.text("status")?,
            step: r.opt_text("step")?,
            created_at: r.i64("created_at")?,
            expires_at: r.i64("expires_at")?,
            processing_since: r.opt_i64("processing_since")?,
            finalize_deadline: r.opt_i64("finalize_deadline")?,
            step_deadline: r.opt_i64("step_deadline")?,
            certificate_serial: r.opt_text("certificate_serial")?,
            caa_checked_at: r.opt_i64("caa_checked_at")?,
            precert_at: r.opt_i64("precert_at")?,
            scts_at: r.opt_i64("scts_at")?,
            completed_at: r.opt_i64("completed_at")?,
            profile: r.opt_text("profile")?,
        })
    }
}

impl AuditAuthz {
    fn from_row(r: &Row) -> Result<Self> {
        Ok(AuditAuthz {
            id: r.text("id")?,
            order_id: r.text("order_id")?,
            account_id: r.text("account_id")?,
            identifier: r.text("identifier")?,
            wildcard: r.i64("wildcard")? != 0,
            status: r.text("status")?,
            expires_at: r.i64("expires_at")?,
            validated_at: r.opt_i64("validated_at")?,
        })
    }
}

impl AuditCertificate {
    fn from_row(r: &Row) -> Result<Self> {
        Ok(AuditCertificate {
            serial: r.text("serial")?,
            order_id: r.text("order_id")?,
            account_id: r.text("account_id")?,
            state: r.text("state")?,
            not_before: r.i64("not_before")?,
            not_after: r.i64("not_after")?,
            created_at: r.i64("created_at")?,
            precert_der: r.opt_blob("precert_der")?,
            sct_list: r.opt_blob("sct_list")?,
            final_der: r.opt_blob("final_der")?,
            revoked_at: r.opt_i64("revoked_at")?,
            revoked_reason: r.opt_i64("revoked_reason")?,
            issuer_id: r.opt_text("issuer_id")?,
            crl_shard: r.i64("crl_shard")?,
            crl_pending: r.i64("crl_pending")? != 0,
            spki_sha256: r.opt_text("spki_sha256")?,
            account_jwk: r.opt_text("account_jwk")?,
            key_blocked_at: r.opt_i64("key_blocked_at")?,
        })
    }
}
