//! Orders, their authorizations and the authorizations' challenges (RFC 8555
//! §7.1.3–7.1.5): created together in one transaction, read by the api and
//! the stages, and the challenge transitions of validation, which carry an
//! authorization and its order along (→ `ready` or `invalid`). What happens
//! to an order once finalized is in `finalization`.

use crate::db::{Row, Script, Stmt, Value};
use crate::{Result, Store, StoreError, json, parse, parse_json, stmt};
use domain::{
    AuthzStatus, CertificateProfile, ChallengeStatus, ChallengeType, FinalizeStep, Identifier,
    OrderStatus, Problem,
};

#[derive(Clone, Debug, PartialEq)]
pub struct Order {
    pub id: String,
    pub account_id: String,
    /// As stored: `ready` and an expiry's `invalid` are also derived on read
    /// (see `domain::order_status_on_read`).
    pub status: OrderStatus,
    pub step: Option<FinalizeStep>,
    pub identifiers: Vec<Identifier>,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub expires_at: i64,
    pub created_at: i64,
    pub csr: Option<Vec<u8>>,
    pub processing_since: Option<i64>,
    pub step_deadline: Option<i64>,
    pub finalize_deadline: Option<i64>,
    pub error: Option<Problem>,
    pub certificate_serial: Option<String>,
    /// When each finalization step finished (unix ms): the order's timeline.
    pub timeline: Timeline,
    /// The certID of the certificate this order renews (RFC 9773 §5), as
    /// the client sent it; the order object shows it back.
    pub replaces: Option<String>,
    /// What the signer issues for it (draft-ietf-acme-profiles).
    pub profile: CertificateProfile,
}

impl Order {
    /// The job that performs this order's current step, if it is processing:
    /// what a stage re-emits when a redelivered job finds the order past its
    /// own step (invariant 2), and what the sweeper sends for an order stuck
    /// at one.
    pub fn job_for_current_step(&self) -> Option<proto::Job> {
        if self.status != OrderStatus::Processing {
            return None;
        }
        let order_id = self.id.clone();
        Some(match self.step? {
            FinalizeStep::CheckCaa => proto::Job::CheckCaa { order_id },
            FinalizeStep::SignPrecert => proto::Job::SignPrecert { order_id },
            FinalizeStep::SubmitCt => proto::Job::SubmitCt { order_id },
            FinalizeStep::SignFinal => proto::Job::SignFinal { order_id },
            // A newer build's step: its stages drive the order.
            FinalizeStep::Unknown => return None,
        })
    }
}

/// When a finalizing order passed each step; derived from columns the
/// transitions set, so it costs no extra writes. With the trace id the
/// finalize request stored, to find the order's spans.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    pub caa_checked_at: Option<i64>,
    pub precert_at: Option<i64>,
    pub scts_at: Option<i64>,
    /// When it became `valid` or `invalid`.
    pub completed_at: Option<i64>,
    /// The W3C trace id of the finalization: its spans are this timeline in
    /// detail, across every stage (None with tracing off).
    pub trace_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Authz {
    pub id: String,
    pub order_id: String,
    pub account_id: String,
    /// The base name (without `*.`), as RFC 8555 §7.1.4 shows it.
    pub identifier: String,
    pub wildcard: bool,
    pub status: AuthzStatus,
    pub expires_at: i64,
    pub validated_at: Option<i64>,
}

impl Authz {
    /// The name as the order requested it: the base name, with `*.` again
    /// for a wildcard. CAA is checked for this name, so that a record's
    /// `issuewild` applies to a wildcard (RFC 8659 §4.3).
    pub fn requested_name(&self) -> String {
        if self.wildcard {
            format!("*.{}", self.identifier)
        } else {
            self.identifier.clone()
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Challenge {
    pub id: String,
    pub authz_id: String,
    pub kind: ChallengeType,
    pub token: String,
    pub status: ChallengeStatus,
    pub validated_at: Option<i64>,
    pub error: Option<Problem>,
}

/// One INSERT for an authorization's challenges (three for a name, one for
/// a wildcard or a reused authorization): `INSERT_CHALLENGES[n - 1]`
/// inserts `n` rows.
const INSERT_CHALLENGES: [&str; 3] = [
    "INSERT INTO challenges (id, authz_id, kind, token, status, validated_at)
     VALUES ($1, $2, $3, $4, $5, $6)",
    "INSERT INTO challenges (id, authz_id, kind, token, status, validated_at)
     VALUES ($1, $2, $3, $4, $5, $6), ($7, $8, $9, $10, $11, $12)",
    "INSERT INTO challenges (id, authz_id, kind, token, status, validated_at)
     VALUES ($1, $2, $3, $4, $5, $6), ($7, $8, $9, $10, $11, $12),
            ($13, $14, $15, $16, $17, $18)",
];

impl Store {
    /// Stores a new order with its authorizations and their challenges in one
    /// transaction: a client never sees half an order.
    pub async fn insert_order(
        &self,
        order: &Order,
        authzs: &[(Authz, Vec<Challenge>)],
    ) -> Result<()> {
        self.db.run(insert_order_script(order, authzs)).await?;
        Ok(())
    }

    pub async fn order(&self, id: &str) -> Result<Option<Order>> {
        let row = self
            .db
            .optional(stmt!("SELECT * FROM orders WHERE id = $1", id))
            .await?;
        row.map(|r| Order::from_row(&r)).transpose()
    }

    /// The account's order ids, oldest first, from `offset`.
    pub async fn order_ids_for_account(
        &self,
        account_id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<String>> {
        let rows = self
            .db
            .all(stmt!(
                "SELECT id FROM orders WHERE account_id = $1 ORDER BY created_at, id
                 LIMIT $2 OFFSET $3",
                account_id,
                limit,
                offset,
            ))
            .await?;
        rows.iter().map(|r| Ok(r.text("id")?)).collect()
    }

    pub async fn authzs_for_order(&self, order_id: &str) -> Result<Vec<Authz>> {
        let rows = self
            .db
            .all(stmt!(
                "SELECT * FROM authzs WHERE order_id = $1 ORDER BY identifier, wildcard",
                order_id
            ))
            .await?;
        rows.iter().map(Authz::from_row).collect()
    }

    pub async fn authz(&self, id: &str) -> Result<Option<Authz>> {
        let row = self
            .db
            .optional(stmt!("SELECT * FROM authzs WHERE id = $1", id))
            .await?;
        row.map(|r| Authz::from_row(&r)).transpose()
    }

    /// Whether the account holds a valid authorization for `identifier`
    /// (`wildcard`: for `*.identifier`) that has not expired at `now`: what
    /// lets an account revoke another's certificate (RFC 8555 §7.6).
    pub async fn holds_valid_authz(
        &self,
        account_id: &str,
        identifier: &str,
        wildcard: bool,
        now: i64,
    ) -> Result<bool> {
        let row = self
            .db
            .optional(stmt!(
                "SELECT 1 AS held FROM authzs
                 WHERE account_id = $1 AND identifier = $2 AND wildcard = $3
                   AND status = 'valid' AND expires_at > $4
                 LIMIT 1",
                account_id,
                identifier,
                wildcard,
                now,
            ))
            .await?;
        Ok(row.is_some())
    }

    pub async fn challenges_for_authz(&self, authz_id: &str) -> Result<Vec<Challenge>> {
        let rows = self
            .db
            .all(stmt!(
                "SELECT * FROM challenges WHERE authz_id = $1 ORDER BY kind",
                authz_id
            ))
            .await?;
        rows.iter().map(Challenge::from_row).collect()
    }

    pub async fn challenge(&self, id: &str) -> Result<Option<Challenge>> {
        let row = self
            .db
            .optional(stmt!("SELECT * FROM challenges WHERE id = $1", id))
            .await?;
        row.map(|r| Challenge::from_row(&r)).transpose()
    }

    /// pending → processing, only while its authorization is still pending
    /// and no sibling challenge is already being validated.
    pub async fn start_challenge(&self, challenge_id: &str, deadline: i64) -> Result<bool> {
        let changed = self
            .db
            .execute(stmt!(
                "UPDATE challenges SET status = 'processing', deadline = $2
                 WHERE id = $1 AND status = 'pending'
                   AND EXISTS (SELECT 1 FROM authzs a
                               WHERE a.id = challenges.authz_id AND a.status = 'pending')
                   AND NOT EXISTS (SELECT 1 FROM challenges s
                                   WHERE s.authz_id = challenges.authz_id
                                     AND s.status = 'processing')",
                challenge_id,
                deadline,
            ))
            .await?;
        Ok(changed == 1)
    }

    /// Records a validation result: the challenge, its authorization and, when
    /// this was the last missing authorization, the order (→ `ready`), in one
    /// transaction. False when the challenge was no longer `processing`.
    pub async fn finish_challenge(
        &self,
        challenge_id: &str,
        outcome: std::result::Result<(), &Problem>,
        now: i64,
    ) -> Result<bool> {
        let (status, authz_status, error) = match outcome {
            Ok(()) => (ChallengeStatus::Valid, AuthzStatus::Valid, None),
            Err(p) => (
                ChallengeStatus::Invalid,
                AuthzStatus::Invalid,
                Some(json(p)),
            ),
        };
        let script = Script::new()
            .require(
                1,
                stmt!(
                    "UPDATE challenges SET status = $2, validated_at = $3, error = $4, deadline = NULL
                     WHERE id = $1 AND status = 'processing'",
                    challenge_id,
                    status.as_str(),
                    now,
                    error.clone(),
                ),
            )
            .then(stmt!(
                "UPDATE authzs SET status = $2, validated_at = $3
                 WHERE id = (SELECT authz_id FROM challenges WHERE id = $1) AND status = 'pending'",
                challenge_id,
                authz_status.as_str(),
                now,
            ));
        let script = if outcome.is_ok() {
            script.then(stmt!(
                "UPDATE orders SET status = 'ready'
                 WHERE id = (SELECT a.order_id FROM challenges c JOIN authzs a ON a.id = c.authz_id
                             WHERE c.id = $1)
                   AND status = 'pending'
                   AND NOT EXISTS (SELECT 1 FROM authzs
                                   WHERE authzs.order_id = orders.id AND authzs.status <> 'valid')",
                challenge_id,
            ))
        } else {
            script
                .then(stmt!(
                    "UPDATE orders SET status = 'invalid', error = $2
                     WHERE id = (SELECT a.order_id FROM challenges c JOIN authzs a ON a.id = c.authz_id
                                 WHERE c.id = $1)
                       AND status = 'pending'",
                    challenge_id,
                    error,
                ))
                // Counted for the failed-validations rate limit; the bucket
                // is `rate_limits::failed_validation_bucket`'s text.
                .then(stmt!(
                    "INSERT INTO rate_limit_events (limit_name, bucket, at_ms)
                     SELECT $2, a.account_id || ' ' || a.identifier, $3
                     FROM challenges c JOIN authzs a ON a.id = c.authz_id WHERE c.id = $1",
                    challenge_id,
                    crate::rate_limits::limit::FAILED_VALIDATIONS,
                    now,
                ))
        };
        Ok(self.db.run(script).await?.committed())
    }

    /// pending|valid → deactivated (RFC 8555 §7.5.2); the order then reads
    /// as `invalid` if it was not finalized yet.
    pub async fn deactivate_authz(&self, authz_id: &str) -> Result<bool> {
        let script = Script::new()
            .require(
                1,
                stmt!(
                    "UPDATE authzs SET status = 'deactivated'
                     WHERE id = $1 AND status IN ('pending', 'valid')",
                    authz_id
                ),
            )
            .then(stmt!(
                "UPDATE orders SET status = 'invalid' WHERE status IN ('pending', 'ready')
                 AND id = (SELECT order_id FROM authzs WHERE id = $1)",
                authz_id
            ));
        Ok(self.db.run(script).await?.committed())
    }
}

/// The writes that store a new order with its authorizations and their
/// challenges; for an order that replaces a certificate, `renewal` adds the
/// claim on it to the same script.
pub(crate) fn insert_order_script(order: &Order, authzs: &[(Authz, Vec<Challenge>)]) -> Script {
    let mut script = Script::new().then(stmt!(
        "INSERT INTO orders (id, account_id, status, identifiers, not_before, not_after,
                             expires_at, created_at, replaces, profile)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &order.id,
        &order.account_id,
        order.status.as_str(),
        json(&order.identifiers),
        order.not_before,
        order.not_after,
        order.expires_at,
        order.created_at,
        order.replaces.as_deref(),
        order.profile.name(),
    ));
    for (authz, challenges) in authzs {
        script = script.then(stmt!(
            "INSERT INTO authzs (id, order_id, account_id, identifier, wildcard, status, expires_at,
                                 validated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &authz.id,
            &authz.order_id,
            &authz.account_id,
            &authz.identifier,
            authz.wildcard,
            authz.status.as_str(),
            authz.expires_at,
            authz.validated_at,
        ));
        for group in challenges.chunks(INSERT_CHALLENGES.len()) {
            let params = group
                .iter()
                .flat_map(|c| {
                    [
                        Value::from(&c.id),
                        Value::from(&c.authz_id),
                        Value::from(c.kind.as_str()),
                        Value::from(&c.token),
                        Value::from(c.status.as_str()),
                        // Set only for a reused authorization's challenge.
                        Value::from(c.validated_at),
                    ]
                })
                .collect();
            script = script.then(Stmt {
                sql: INSERT_CHALLENGES[group.len() - 1],
                params,
            });
        }
    }
    script
}

impl Order {
    pub(crate) fn from_row(r: &Row) -> Result<Self> {
        Ok(Order {
            id: r.text("id")?,
            account_id: r.text("account_id")?,
            status: parse::<OrderStatus>(r, "status")?,
            step: r
                .opt_text("step")?
                .map(|s| s.parse())
                .transpose()
                .map_err(StoreError::Corrupt)?,
            identifiers: parse_json(r, "identifiers")?.unwrap_or_default(),
            not_before: r.opt_i64("not_before")?,
            not_after: r.opt_i64("not_after")?,
            expires_at: r.i64("expires_at")?,
            created_at: r.i64("created_at")?,
            csr: r.opt_blob("csr")?,
            processing_since: r.opt_i64("processing_since")?,
            step_deadline: r.opt_i64("step_deadline")?,
            finalize_deadline: r.opt_i64("finalize_deadline")?,
            error: parse_json(r, "error")?,
            certificate_serial: r.opt_text("certificate_serial")?,
            timeline: Timeline {
                caa_checked_at: r.opt_i64("caa_checked_at")?,
                precert_at: r.opt_i64("precert_at")?,
                scts_at: r.opt_i64("scts_at")?,
                completed_at: r.opt_i64("completed_at")?,
                trace_id: r.opt_text("trace_id")?,
            },
            replaces: r.opt_text("replaces")?,
            profile: match r.opt_text("profile")? {
                None => CertificateProfile::default(),
                Some(name) => CertificateProfile::from_name(&name)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown profile {name:?}")))?,
            },
        })
    }
}

impl Authz {
    pub(crate) fn from_row(r: &Row) -> Result<Self> {
        Ok(Authz {
            id: r.text("id")?,
            order_id: r.text("order_id")?,
            account_id: r.text("account_id")?,
            identifier: r.text("identifier")?,
            wildcard: r.i64("wildcard")? != 0,
            status: parse::<AuthzStatus>(r, "status")?,
            expires_at: r.i64("expires_at")?,
            validated_at: r.opt_i64("validated_at")?,
        })
    }
}

impl Challenge {
    pub(crate) fn from_row(r: &Row) -> Result<Self> {
        Ok(Challenge {
            id: r.text("id")?,
            authz_id: r.text("authz_id")?,
            kind: parse(r, "kind")?,
            token: r.text("token")?,
            status: parse::<ChallengeStatus>(r, "status")?,
            validated_at: r.opt_i64("validated_at")?,
            error: parse_json(r, "error")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::Job;

    fn order(status: OrderStatus, step: Option<FinalizeStep>) -> Order {
        Order {
            id: "o1".into(),
            account_id: "a1".into(),
            status,
            step,
            identifiers: vec![Identifier::dns("kiln.test")],
            not_before: None,
            not_after: None,
            expires_at: 0,
            created_at: 0,
            csr: None,
            processing_since: None,
            step_deadline: None,
            finalize_deadline: None,
            error: None,
            certificate_serial: None,
            timeline: Timeline::default(),
            replaces: None,
            profile: Default::default(),
        }
    }

    #[test]
    fn an_authorization_requests_its_name_with_the_wildcard_again() {
        for requested in ["kiln.test", "*.kiln.test", "*.sub.kiln.test"] {
            let identifier = Identifier::dns(requested);
            let authz = Authz {
                id: "a1".into(),
                order_id: "o1".into(),
                account_id: "acct1".into(),
                identifier: identifier.authz_name().to_string(),
                wildcard: identifier.is_wildcard(),
                status: AuthzStatus::Pending,
                expires_at: 0,
                validated_at: None,
            };
            assert_eq!(authz.requested_name(), requested);
        }
    }

    #[test]
    fn a_processing_orders_step_has_the_job_of_its_stage() {
        let order_id = || "o1".to_string();
        let cases = [
            (
                FinalizeStep::CheckCaa,
                Job::CheckCaa {
                    order_id: order_id(),
                },
            ),
            (
                FinalizeStep::SignPrecert,
                Job::SignPrecert {
                    order_id: order_id(),
                },
            ),
            (
                FinalizeStep::SubmitCt,
                Job::SubmitCt {
                    order_id: order_id(),
                },
            ),
            (
                FinalizeStep::SignFinal,
                Job::SignFinal {
                    order_id: order_id(),
                },
            ),
        ];
        for (step, job) in cases {
            let processing = order(OrderStatus::Processing, Some(step));
            assert_eq!(processing.job_for_current_step(), Some(job), "{step}");
        }
    }

    #[test]
    fn an_order_not_processing_a_step_has_no_job() {
        assert_eq!(
            order(OrderStatus::Processing, None).job_for_current_step(),
            None
        );
        // A step only a newer build knows: its stages drive it, not ours.
        assert_eq!(
            order(OrderStatus::Processing, Some(FinalizeStep::Unknown)).job_for_current_step(),
            None
        );
        for status in [
            OrderStatus::Pending,
            OrderStatus::Ready,
            OrderStatus::Valid,
            OrderStatus::Invalid,
        ] {
            // A stale step on a finished order must not start work again.
            let finished = order(status, Some(FinalizeStep::SignFinal));
            assert_eq!(finished.job_for_current_step(), None, "{status:?}");
        }
    }
}
