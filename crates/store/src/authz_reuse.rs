//! Authorization reuse (RFC 8555 §7.1.4 lets a server hand out a valid
//! authorization in a new order): the newest valid authorization an account
//! holds for an identifier, with the challenge that validated it, for the
//! api to copy into a new order as already valid.

use crate::{Authz, Challenge, Result, Store, stmt};

/// `CROSS JOIN` makes SQLite start from the account's authorizations
/// (`authzs_by_account`); with a plain join its planner, which has no
/// statistics, starts from every valid challenge in the database
/// (`challenges_by_deadline`), one per order ever validated, so each
/// new-order cost grew with the table. PostgreSQL reorders it freely.
pub(crate) const REUSABLE_AUTHZ: &str =
    "SELECT a.id, a.order_id, a.account_id, a.identifier, a.wildcard, a.status,
            a.expires_at, a.validated_at,
            c.id AS challenge_id, c.kind, c.token, c.status AS challenge_status,
            c.validated_at AS challenge_validated_at
     FROM authzs a CROSS JOIN challenges c
     WHERE c.authz_id = a.id AND c.status = 'valid' AND c.kind <> 'dns-persist-01'
       AND a.account_id = $1 AND a.identifier = $2 AND a.wildcard = $3
       AND a.status = 'valid' AND a.expires_at > $4 AND a.validated_at >= $5
     ORDER BY a.validated_at DESC
     LIMIT 1";

impl Store {
    /// The account's newest valid authorization of `identifier` (`wildcard`
    /// as asked) that expires after `expires_after` and was validated at or
    /// after `validated_since` (unix ms), with its valid challenge. One
    /// validated by dns-persist-01 is never reused, as Boulder does: the
    /// record is read again for each order (its `persistUntil` and the BRs'
    /// 10-day reuse cap for the method, 4.2.1, need no tracking then).
    pub async fn reusable_authz(
        &self,
        account_id: &str,
        identifier: &str,
        wildcard: bool,
        expires_after: i64,
        validated_since: i64,
    ) -> Result<Option<(Authz, Challenge)>> {
        let row = self
            .db
            .optional(stmt!(
                REUSABLE_AUTHZ,
                account_id,
                identifier,
                wildcard,
                expires_after,
                validated_since,
            ))
            .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let authz = Authz::from_row(&r)?;
        let challenge = Challenge {
            id: r.text("challenge_id")?,
            authz_id: authz.id.clone(),
            kind: crate::parse(&r, "kind")?,
            token: r.text("token")?,
            status: crate::parse(&r, "challenge_status")?,
            validated_at: r.opt_i64("challenge_validated_at")?,
            error: None,
        };
        Ok(Some((authz, challenge)))
    }
}
