//! The finalization pipeline's transitions: an order from `ready` through
//! its steps (check-caa, sign-precert, submit-ct, sign-final) to `valid` or
//! `invalid`, and its certificate row along with it. Each is a
//! compare-and-set (invariant 3) whose `bool` says whether this caller made
//! it; where an order and its certificate change together they change in
//! one transaction. Intent is stored before every irreversible act
//! (invariant 5): the serial's claim (`precert-signing`) before the
//! precertificate's signature, `final-signing` before the final signature.

use crate::blocked_keys::{blocked_key_problem, lock_key};
use crate::db::{Backend, Script};
use crate::notifications::notify_done;
use crate::{FinalizeObservation, NewCertificate, Result, Store, StoreError, json, now_ms, stmt};
use domain::{FinalizeStep, Problem, ProblemKind};

/// What a finalize writes on the order as it moves it to `processing`.
pub struct BeginFinalize<'a> {
    pub order_id: &'a str,
    pub csr_der: &'a [u8],
    pub now: i64,
    /// When the first step (check-caa) is re-driven if not done.
    pub step_deadline: i64,
    /// When the order ends `invalid` if not `valid`.
    pub finalize_deadline: i64,
    /// The finalize request's trace, shown by `kiln order show`.
    pub trace_id: Option<&'a str>,
}

impl Store {
    /// ready → processing at step `check-caa`, in one conditional UPDATE: of
    /// two concurrent finalizes exactly one gets `true`. `trace_id` is the
    /// finalize request's trace (None with tracing off), shown by
    /// `kiln order show`.
    pub async fn begin_finalize(
        &self,
        order_id: &str,
        csr_der: &[u8],
        now: i64,
        step_deadline: i64,
        finalize_deadline: i64,
        trace_id: Option<&str>,
    ) -> Result<bool> {
        let begin = BeginFinalize {
            order_id,
            csr_der,
            now,
            step_deadline,
            finalize_deadline,
            trace_id,
        };
        self.begin_finalize_observed(begin, None).await
    }

    /// [`Store::begin_finalize`], recording `observation` in the same
    /// commit (an async finalize is answered `processing` whatever
    /// happens next, so its observation is known before the answer).
    pub async fn begin_finalize_observed(
        &self,
        begin: BeginFinalize<'_>,
        observation: Option<&FinalizeObservation>,
    ) -> Result<bool> {
        let mut script = Script::new().require(
            1,
            stmt!(
                "UPDATE orders SET status = 'processing', step = $2, csr = $3, processing_since = $4,
                        step_deadline = $5, finalize_deadline = $6, trace_id = $7
                 WHERE id = $1 AND status = 'ready' AND expires_at > $4",
                begin.order_id,
                FinalizeStep::CheckCaa.as_str(),
                begin.csr_der,
                begin.now,
                begin.step_deadline,
                begin.finalize_deadline,
                begin.trace_id,
            ),
        );
        if let Some(observation) = observation {
            script = script.then(observation.insert());
        }
        Ok(self.db.run(script).await?.committed())
    }

    /// Moves a processing order from one step to the next.
    pub async fn advance_step(
        &self,
        order_id: &str,
        from: FinalizeStep,
        to: FinalizeStep,
        step_deadline: i64,
    ) -> Result<bool> {
        // Leaving check-caa is the one step whose end has its own column.
        let statement = if from == FinalizeStep::CheckCaa {
            stmt!(
                "UPDATE orders SET step = $3, step_deadline = $4, caa_checked_at = $5
                 WHERE id = $1 AND status = 'processing' AND step = $2",
                order_id,
                from.as_str(),
                to.as_str(),
                step_deadline,
                now_ms(),
            )
        } else {
            stmt!(
                "UPDATE orders SET step = $3, step_deadline = $4
                 WHERE id = $1 AND status = 'processing' AND step = $2",
                order_id,
                from.as_str(),
                to.as_str(),
                step_deadline,
            )
        };
        Ok(self.db.execute(statement).await? == 1)
    }

    /// processing → invalid with the problem the client will see (invariant 6).
    pub async fn fail_order(&self, order_id: &str, problem: &Problem) -> Result<bool> {
        let script = Script::new()
            .require(
                1,
                stmt!(
                    "UPDATE orders SET status = 'invalid', step = NULL, step_deadline = NULL,
                            error = $2, completed_at = $3
                     WHERE id = $1 AND status = 'processing'",
                    order_id,
                    json(problem),
                    now_ms(),
                ),
            )
            .only_on(Backend::Postgres, notify_done(order_id));
        let failed = self.db.run(script).await?.committed();
        if failed {
            self.announce_done(order_id);
        }
        Ok(failed)
    }

    /// Ends an order whose job failed for good (invariant 6). The client sees
    /// only `serverInternal`; the reason goes to the logs.
    pub async fn give_up_order(&self, order_id: &str, reason: &str) {
        tracing::warn!(order_id, reason, "giving up on order");
        if let Err(e) = self.fail_order(order_id, &Problem::internal()).await {
            tracing::warn!(order_id, error = %e, "could not mark the order invalid; the sweeper will");
        }
    }

    /// sign-precert → claimed by `cert.serial`, before anything is signed
    /// with it (invariant 5): in one transaction, the order names the serial
    /// only if it is still at sign-precert with the claim the caller saw
    /// (`superseding`: none, or the serial of a claim the caller found
    /// stale), and the serial's row is written `precert-signing`, which has
    /// revocation status from then on. Of two deliveries of one SignPrecert
    /// exactly one gets `true`; the other must not sign. A superseded claim
    /// keeps its row in `precert-signing` (a precertificate may exist for
    /// it) and is never reused. `now` is the claim's time, `created_at`, by
    /// which a later delivery tells how old the claim is.
    ///
    /// A key on the blocklist (`cert.key`, as [`crate::KeyDigest`] names it)
    /// is never claimed for: the claim's UPDATE itself requires the key not
    /// blocked, so no serial is written and nothing may be signed for a key
    /// blocked (a keyCompromise revocation, an operator) while its order was
    /// in flight, however late, and a keyCompromise revocation committed
    /// after the claim revokes its serial (`lock_key`). Such an order ends
    /// `invalid` with `badCSR`, the api's answer for that key at finalize,
    /// and the claim is `false`.
    pub async fn claim_precert(
        &self,
        cert: &NewCertificate,
        superseding: Option<&str>,
        now: i64,
        step_deadline: i64,
    ) -> Result<bool> {
        let claim = match superseding {
            None => stmt!(
                "UPDATE orders SET certificate_serial = $2, step_deadline = $3
                 WHERE id = $1 AND status = 'processing' AND step = $4
                   AND certificate_serial IS NULL
                   AND NOT EXISTS (SELECT 1 FROM blocked_keys WHERE spki_sha256 = $5)",
                &cert.order_id,
                &cert.serial,
                step_deadline,
                FinalizeStep::SignPrecert.as_str(),
                cert.key.as_str(),
            ),
            Some(stale) => stmt!(
                "UPDATE orders SET certificate_serial = $2, step_deadline = $3
                 WHERE id = $1 AND status = 'processing' AND step = $4
                   AND certificate_serial = $5
                   AND NOT EXISTS (SELECT 1 FROM blocked_keys WHERE spki_sha256 = $6)",
                &cert.order_id,
                &cert.serial,
                step_deadline,
                FinalizeStep::SignPrecert.as_str(),
                stale,
                cert.key.as_str(),
            ),
        };
        // The key's lock (PostgreSQL: see `lock_key`), then the order's row:
        // the loser's UPDATE waits for the winner's commit (the lock, the
        // row's lock; SQLite's one writer), then matches nothing, and its
        // transaction ends before writing a serial.
        let script = lock_key(Script::new(), &cert.key)
            .require(1, claim)
            .require(
                1,
                stmt!(
                    "INSERT INTO certificates (serial, order_id, account_id, state, not_before,
                                           not_after, created_at, issuer_id, spki_sha256,
                                           crl_shard)
                 VALUES ($1, $2, $3, 'precert-signing', $4, $5, $6, $7, $8, $9)",
                    &cert.serial,
                    &cert.order_id,
                    &cert.account_id,
                    cert.not_before,
                    cert.not_after,
                    now,
                    &cert.issuer_id,
                    cert.key.as_str(),
                    i64::from(cert.crl_shard),
                ),
            );
        match self.db.run(script).await {
            Ok(outcome) if outcome.committed() => Ok(true),
            Ok(_) => {
                self.fail_claim_for_blocked_key(cert, superseding).await?;
                Ok(false)
            }
            // The serial's uniqueness is the primary key's.
            Err(e) if e.is_unique_violation() => Err(StoreError::Conflict(format!(
                "serial {} already used",
                cert.serial
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// After a refused claim: the order ends `invalid` if its key is why —
    /// still at sign-precert with the claim the caller saw (so the refusal
    /// was not another delivery's claim) and its key blocked, in one
    /// conditional UPDATE. Blocked keys are never unblocked, so nobody can
    /// claim such an order; ending it here spares the sweeper's re-drives
    /// and tells the client now.
    async fn fail_claim_for_blocked_key(
        &self,
        cert: &NewCertificate,
        superseding: Option<&str>,
    ) -> Result<()> {
        let problem = json(&blocked_key_problem(ProblemKind::BadCsr, "the CSR's key"));
        let fail = match superseding {
            None => stmt!(
                "UPDATE orders SET status = 'invalid', step = NULL, step_deadline = NULL,
                        error = $2, completed_at = $3
                 WHERE id = $1 AND status = 'processing' AND step = $4
                   AND certificate_serial IS NULL
                   AND EXISTS (SELECT 1 FROM blocked_keys WHERE spki_sha256 = $5)",
                &cert.order_id,
                problem,
                now_ms(),
                FinalizeStep::SignPrecert.as_str(),
                cert.key.as_str(),
            ),
            Some(stale) => stmt!(
                "UPDATE orders SET status = 'invalid', step = NULL, step_deadline = NULL,
                        error = $2, completed_at = $3
                 WHERE id = $1 AND status = 'processing' AND step = $4
                   AND certificate_serial = $5
                   AND EXISTS (SELECT 1 FROM blocked_keys WHERE spki_sha256 = $6)",
                &cert.order_id,
                problem,
                now_ms(),
                FinalizeStep::SignPrecert.as_str(),
                stale,
                cert.key.as_str(),
            ),
        };
        let script = Script::new()
            .require(1, fail)
            .only_on(Backend::Postgres, notify_done(&cert.order_id));
        if self.db.run(script).await?.committed() {
            tracing::warn!(
                order_id = %cert.order_id,
                key = %cert.key,
                "not signing: the CSR's key was blocked while the order was in flight; order invalid"
            );
            self.announce_done(&cert.order_id);
        }
        Ok(())
    }

    /// Stores the signed precertificate of the order's claim and moves the
    /// order to `submit-ct`, in one transaction: `true`. If the claim is no
    /// longer the order's (superseded as stale, or the order ended
    /// meanwhile), the precertificate is still recorded, on its serial's
    /// row, which becomes `abandoned` (revocable, never issued): `false`,
    /// and the order is left to whoever holds it now. No signed
    /// precertificate is dropped.
    pub async fn store_precert(
        &self,
        order_id: &str,
        serial: &str,
        der: &[u8],
        step_deadline: i64,
    ) -> Result<bool> {
        let script = Script::new()
            .require(
                1,
                stmt!(
                    "UPDATE orders SET step = $3, step_deadline = $4, precert_at = $6
                     WHERE id = $1 AND status = 'processing' AND step = $5
                       AND certificate_serial = $2",
                    order_id,
                    serial,
                    FinalizeStep::SubmitCt.as_str(),
                    step_deadline,
                    FinalizeStep::SignPrecert.as_str(),
                    now_ms(),
                ),
            )
            .require(
                1,
                stmt!(
                    "UPDATE certificates SET state = 'precert', precert_der = $2
                     WHERE serial = $1 AND state = 'precert-signing'",
                    serial,
                    der,
                ),
            );
        if self.db.run(script).await?.committed() {
            return Ok(true);
        }
        let kept = self
            .db
            .execute(stmt!(
                "UPDATE certificates SET state = 'abandoned', precert_der = $2
                 WHERE serial = $1 AND state = 'precert-signing'",
                serial,
                der,
            ))
            .await?;
        if kept != 1 {
            // Only the delivery that claimed a serial signs with it, so its
            // row can only be where the claim left it.
            tracing::error!(
                order_id,
                serial,
                "a signed precertificate found its serial's row no longer precert-signing"
            );
        }
        Ok(false)
    }

    /// Stores the SCT list extension for the order's precertificate and moves
    /// the order to `sign-final`; neither happens unless both rows are where
    /// the pipeline left them.
    pub async fn store_scts(
        &self,
        order_id: &str,
        serial: &str,
        sct_list: &[u8],
        step_deadline: i64,
    ) -> Result<bool> {
        let script = Script::new()
            .require(
                1,
                stmt!(
                    "UPDATE orders SET step = $3, step_deadline = $4, scts_at = $6
                     WHERE id = $1 AND status = 'processing' AND step = $5
                       AND certificate_serial = $2",
                    order_id,
                    serial,
                    FinalizeStep::SignFinal.as_str(),
                    step_deadline,
                    FinalizeStep::SubmitCt.as_str(),
                    now_ms(),
                ),
            )
            .require(
                1,
                stmt!(
                    "UPDATE certificates SET sct_list = $2 WHERE serial = $1 AND state = 'precert'",
                    serial,
                    sct_list,
                ),
            );
        Ok(self.db.run(script).await?.committed())
    }

    /// precert → final-signing, committed before the signing call: a signer
    /// that later finds this state without a final certificate knows a
    /// signature may exist and must not sign this serial again.
    pub async fn begin_final_signing(&self, serial: &str) -> Result<bool> {
        let changed = self
            .db
            .execute(stmt!(
                "UPDATE certificates SET state = 'final-signing'
                 WHERE serial = $1 AND state = 'precert' AND sct_list IS NOT NULL",
                serial
            ))
            .await?;
        Ok(changed == 1)
    }

    /// Stores the final certificate and makes the order `valid`.
    pub async fn store_final(&self, order_id: &str, serial: &str, der: &[u8]) -> Result<bool> {
        let script = Script::new()
            .require(
                1,
                stmt!(
                    "UPDATE certificates SET state = 'issued', final_der = $2
                     WHERE serial = $1 AND state = 'final-signing'",
                    serial,
                    der,
                ),
            )
            .require(
                1,
                stmt!(
                    "UPDATE orders SET status = 'valid', step = NULL, step_deadline = NULL,
                            completed_at = $4
                     WHERE id = $1 AND status = 'processing' AND step = $3
                       AND certificate_serial = $2",
                    order_id,
                    serial,
                    FinalizeStep::SignFinal.as_str(),
                    now_ms(),
                ),
            )
            .only_on(Backend::Postgres, notify_done(order_id));
        let issued = self.db.run(script).await?.committed();
        if issued {
            self.announce_done(order_id);
        }
        Ok(issued)
    }

    /// After a final signing that may or may not have happened: abandon the
    /// serial (its precertificate stays recorded, so it can be revoked) and
    /// send the order back to `sign-precert` for a new serial, together or
    /// not at all: `false` if another delivery restarted it first (or the
    /// order moved on).
    pub async fn restart_issuance(
        &self,
        order_id: &str,
        serial: &str,
        step_deadline: i64,
    ) -> Result<bool> {
        let script = Script::new()
            .require(
                1,
                stmt!(
                    "UPDATE orders SET step = $3, step_deadline = $4, certificate_serial = NULL
                     WHERE id = $1 AND status = 'processing' AND step = $5
                       AND certificate_serial = $2",
                    order_id,
                    serial,
                    FinalizeStep::SignPrecert.as_str(),
                    step_deadline,
                    FinalizeStep::SignFinal.as_str(),
                ),
            )
            .require(
                1,
                stmt!(
                    "UPDATE certificates SET state = 'abandoned'
                     WHERE serial = $1 AND state = 'final-signing'",
                    serial
                ),
            );
        Ok(self.db.run(script).await?.committed())
    }
}
