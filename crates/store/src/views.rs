//! Joined reads: an order with its authorizations, an authorization with
//! its challenges, a challenge with its authorization. Each view the api
//! serves (a poll, finalize, an authorization, a challenge POST) and each
//! stage's look at its work is one statement and one round trip instead of
//! two (BENCHMARKS.md, "Database statements per order").

use crate::db::Row;
use crate::orders::{Authz, Challenge, Order};
use crate::{Result, Store, parse, parse_json, stmt};
use domain::{AuthzStatus, ChallengeStatus, ChallengeType};

impl Store {
    /// The order with its authorizations, in one statement: every order
    /// view (a poll, finalize, the CAA recheck) is one round trip, not two
    /// (BENCHMARKS.md, "Database statements per order").
    pub async fn order_with_authzs(&self, id: &str) -> Result<Option<(Order, Vec<Authz>)>> {
        let rows = self
            .db
            .all(stmt!(
                "SELECT o.*, a.id AS authz_id, a.order_id AS authz_order_id,
                        a.account_id AS authz_account_id, a.identifier AS authz_identifier,
                        a.wildcard AS authz_wildcard, a.status AS authz_status,
                        a.expires_at AS authz_expires_at, a.validated_at AS authz_validated_at
                 FROM orders o LEFT JOIN authzs a ON a.order_id = o.id
                 WHERE o.id = $1 ORDER BY a.identifier, a.wildcard",
                id
            ))
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let order = Order::from_row(first)?;
        let mut authzs = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.opt_text("authz_id")?.is_some() {
                authzs.push(Authz::from_prefixed_row(row)?);
            }
        }
        Ok(Some((order, authzs)))
    }

    /// The authorization with its challenges, in one statement (the
    /// authorization view).
    pub async fn authz_with_challenges(&self, id: &str) -> Result<Option<(Authz, Vec<Challenge>)>> {
        let rows = self
            .db
            .all(stmt!(
                "SELECT a.*, c.id AS challenge_id, c.kind AS challenge_kind,
                        c.token AS challenge_token, c.status AS challenge_status,
                        c.validated_at AS challenge_validated_at, c.error AS challenge_error
                 FROM authzs a LEFT JOIN challenges c ON c.authz_id = a.id
                 WHERE a.id = $1 ORDER BY c.kind",
                id
            ))
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let authz = Authz::from_row(first)?;
        let mut challenges = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(challenge_id) = row.opt_text("challenge_id")? {
                challenges.push(Challenge {
                    id: challenge_id,
                    authz_id: authz.id.clone(),
                    kind: parse(row, "challenge_kind")?,
                    token: row.text("challenge_token")?,
                    status: parse::<ChallengeStatus>(row, "challenge_status")?,
                    validated_at: row.opt_i64("challenge_validated_at")?,
                    error: parse_json(row, "challenge_error")?,
                });
            }
        }
        Ok(Some((authz, challenges)))
    }

    /// The challenge with its authorization, in one statement (a challenge
    /// POST, a validation).
    pub async fn challenge_with_authz(&self, id: &str) -> Result<Option<(Challenge, Authz)>> {
        let row = self
            .db
            .optional(stmt!(
                "SELECT c.*, a.order_id AS authz_order_id, a.account_id AS authz_account_id,
                        a.identifier AS authz_identifier, a.wildcard AS authz_wildcard,
                        a.status AS authz_status, a.expires_at AS authz_expires_at,
                        a.validated_at AS authz_validated_at
                 FROM challenges c JOIN authzs a ON a.id = c.authz_id
                 WHERE c.id = $1",
                id
            ))
            .await?;
        row.map(|r| Ok((Challenge::from_row(&r)?, Authz::from_prefixed_row(&r)?)))
            .transpose()
    }

    /// The challenge type that validated each valid authorization of the
    /// order, by authorization id: what CAA `validationmethods` (RFC 8657
    /// §4) is checked against when the finalize recheck repeats CAA. Read
    /// only for a recheck, so the order views do not pay for it.
    pub async fn validation_methods(
        &self,
        order_id: &str,
    ) -> Result<std::collections::HashMap<String, ChallengeType>> {
        let rows = self.db.all(stmt!(VALIDATION_METHODS, order_id)).await?;
        rows.iter()
            .map(|r| Ok((r.text("authz_id")?, parse::<ChallengeType>(r, "kind")?)))
            .collect()
    }
}

/// Starts from the order's authorizations (`CROSS JOIN` fixes SQLite's
/// join order): joined the other way, SQLite's planner read every valid
/// challenge in the database for each recheck.
pub(crate) const VALIDATION_METHODS: &str = "SELECT c.authz_id, c.kind
     FROM authzs a CROSS JOIN challenges c
     WHERE c.authz_id = a.id AND a.order_id = $1 AND c.status = 'valid'";

impl Authz {
    /// An authorization from a joined row, its columns prefixed `authz_`
    /// (`order_with_authzs`, `challenge_with_authz`).
    fn from_prefixed_row(r: &Row) -> Result<Self> {
        Ok(Authz {
            id: r.text("authz_id")?,
            order_id: r.text("authz_order_id")?,
            account_id: r.text("authz_account_id")?,
            identifier: r.text("authz_identifier")?,
            wildcard: r.i64("authz_wildcard")? != 0,
            status: parse::<AuthzStatus>(r, "authz_status")?,
            expires_at: r.i64("authz_expires_at")?,
            validated_at: r.opt_i64("authz_validated_at")?,
        })
    }
}
