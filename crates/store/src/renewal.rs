//! ACME Renewal Information (RFC 9773): what the api needs to suggest a
//! certificate's renewal window, the operator's "renew now" marks, and
//! orders that replace a certificate.
//!
//! One live replacement per certificate is the database's rule, not a check
//! before an insert: the claim is a row keyed by the serial, written in the
//! order's own transaction by a conditional upsert that takes over only a
//! claim whose order is dead (invalid, or expired unfinished). Two racing
//! replacements cannot both commit.

use crate::db::Row;
use crate::orders::{Authz, Challenge, Order, insert_order_script};
use crate::{CertificateState, Result, Store, parse, stmt};

/// A certificate as ARI sees it: one statement reads it with its mark.
#[derive(Clone, Debug, PartialEq)]
pub struct RenewalFacts {
    /// Lowercase hex, as in the certificate URL.
    pub serial: String,
    pub account_id: String,
    pub state: CertificateState,
    /// Unix milliseconds.
    pub not_before: i64,
    pub not_after: i64,
    pub revoked_at: Option<i64>,
    pub final_der: Option<Vec<u8>>,
    /// Set when an operator asked for it to be renewed at once.
    pub renew_now: Option<RenewNow>,
}

/// An operator's "renew now" mark (`kiln ari renew-now`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewNow {
    pub marked_at: i64,
    /// Shown to clients as `explanationURL`.
    pub explanation_url: Option<String>,
}

/// What marking a serial did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewNowMark {
    Marked,
    /// Marked before; the first mark stands.
    AlreadyMarked,
    /// No certificate has this serial.
    Unknown,
}

/// The claim's order is dead, the status a client would read
/// (`domain::order_status_on_read`): stored `invalid`, or `pending`/`ready`
/// but expired or with an authorization that is neither pending nor valid.
/// `$3` is now.
const TAKE_OVER_A_DEAD_CLAIM: &str =
    "INSERT INTO replacements (serial, order_id, created_at) VALUES ($1, $2, $3)
     ON CONFLICT (serial) DO UPDATE SET order_id = excluded.order_id,
                                        created_at = excluded.created_at
     WHERE EXISTS (
         SELECT 1 FROM orders o WHERE o.id = replacements.order_id
           AND (o.status = 'invalid'
                OR (o.status IN ('pending', 'ready')
                    AND (o.expires_at <= $3
                         OR EXISTS (SELECT 1 FROM authzs a WHERE a.order_id = o.id
                                      AND (a.status NOT IN ('pending', 'valid')
                                           OR a.expires_at <= $3))))))";

impl Store {
    /// The certificate `serial` with its renew-now mark, if it exists.
    pub async fn renewal_facts(&self, serial: &str) -> Result<Option<RenewalFacts>> {
        let row = self
            .db
            .optional(stmt!(
                "SELECT c.serial, c.account_id, c.state, c.not_before, c.not_after,
                        c.revoked_at, c.final_der,
                        r.marked_at AS renew_now_at, r.explanation_url
                 FROM certificates c LEFT JOIN renew_now r ON r.serial = c.serial
                 WHERE c.serial = $1",
                serial
            ))
            .await?;
        row.map(|r| RenewalFacts::from_row(&r)).transpose()
    }

    /// Asks for certificate `serial` to be renewed at once: from now on its
    /// suggested window lies in the past.
    pub async fn mark_renew_now(
        &self,
        serial: &str,
        explanation_url: Option<&str>,
        now: i64,
    ) -> Result<RenewNowMark> {
        let added = self
            .db
            .execute(stmt!(
                "INSERT INTO renew_now (serial, explanation_url, marked_at)
                 SELECT serial, $2, $3 FROM certificates WHERE serial = $1
                 ON CONFLICT (serial) DO NOTHING",
                serial,
                explanation_url,
                now,
            ))
            .await?;
        if added == 1 {
            return Ok(RenewNowMark::Marked);
        }
        let known = self
            .db
            .optional(stmt!(
                "SELECT serial FROM certificates WHERE serial = $1",
                serial
            ))
            .await?;
        Ok(match known {
            Some(_) => RenewNowMark::AlreadyMarked,
            None => RenewNowMark::Unknown,
        })
    }

    /// Stores a new order that replaces certificate `serial` (RFC 9773 §5;
    /// its certID is the order's `replaces`), together with the claim on
    /// that serial: false, and nothing stored, when another order that is
    /// not dead already holds it (`alreadyReplaced`).
    pub async fn insert_replacing_order(
        &self,
        order: &Order,
        authzs: &[(Authz, Vec<Challenge>)],
        serial: &str,
    ) -> Result<bool> {
        debug_assert!(
            order.replaces.is_some(),
            "a replacing order names its certID"
        );
        let claim = stmt!(TAKE_OVER_A_DEAD_CLAIM, serial, &order.id, order.created_at);
        let script = insert_order_script(order, authzs).require(1, claim);
        Ok(self.db.run(script).await?.committed())
    }

    /// The order that holds certificate `serial`'s replacement claim.
    pub async fn replacing_order_id(&self, serial: &str) -> Result<Option<String>> {
        let row = self
            .db
            .optional(stmt!(
                "SELECT order_id FROM replacements WHERE serial = $1",
                serial
            ))
            .await?;
        row.map(|r| Ok(r.text("order_id")?)).transpose()
    }
}

impl RenewalFacts {
    fn from_row(r: &Row) -> Result<Self> {
        let renew_now = match r.opt_i64("renew_now_at")? {
            Some(marked_at) => Some(RenewNow {
                marked_at,
                explanation_url: r.opt_text("explanation_url")?,
            }),
            None => None,
        };
        Ok(RenewalFacts {
            serial: r.text("serial")?,
            account_id: r.text("account_id")?,
            state: parse(r, "state")?,
            not_before: r.i64("not_before")?,
            not_after: r.i64("not_after")?,
            revoked_at: r.opt_i64("revoked_at")?,
            final_der: r.opt_blob("final_der")?,
            renew_now,
        })
    }
}
