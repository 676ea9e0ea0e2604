//! The `ct-submitter` stage: obtain SCTs for an order's precertificate from
//! enough Certificate Transparency logs (RFC 6962 and static-ct-api), verify
//! them, and store the SCT list the final certificate will embed; then, best
//! effort, log the final certificate too.
//!
//! Logs that are down are retried, with backoff, until the order's finalize
//! deadline: only then does the order end `invalid`. The runner serving this
//! stage must therefore allow enough attempts (see [`runner_config`]).

#![forbid(unsafe_code)]

pub mod config;
pub mod submit;

pub use submit::{
    CtLog, EmbeddedSct, LogKind, Requirement, SubmitPolicy, select_logs, submit_final,
    submit_precert,
};

use async_trait::async_trait;
use domain::{FinalizeStep, OrderStatus, Problem, ProblemKind};
use proto::Job;
use queue::{Handler, RunnerConfig, StageError};
use std::time::Duration;
use store::{CertificateState, Store, now_ms};
use tracing::{info, warn};

/// The longest pause between two submission attempts for one order.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

/// Orders one replica submits at once when its configuration says nothing
/// else (the all-in-one uses it as is). A submission is almost all waiting
/// on logs: with 16 at once, logs that answer in 2 s (10 s) let through 4
/// (0.8) orders a second, each order waiting twice (precertificate, then
/// final certificate) — `bench/scenario3.sh` measured exactly that.
pub const CONCURRENCY: usize = 256;

/// Adapts a runner configuration to this stage: the handler itself ends an
/// order once its finalize deadline has passed, so the runner must not give
/// up first (no attempt limit to speak of), and the pause between attempts
/// stays short so a log that comes back is used soon.
pub fn runner_config(mut base: RunnerConfig) -> RunnerConfig {
    base.max_attempts = u32::MAX;
    base.backoff_max = base.backoff_max.min(MAX_RETRY_DELAY);
    base
}

pub struct CtSubmitter {
    pub store: Store,
    pub client: reqwest::Client,
    pub logs: Vec<CtLog>,
    pub policy: SubmitPolicy,
    pub step_timeout: Duration,
}

/// Attempts at reading the database for a best-effort final submission.
const SUBMIT_FINAL_ATTEMPTS: u32 = 3;

impl CtSubmitter {
    async fn submit_ct(&self, order_id: &str) -> Result<Vec<Job>, StageError> {
        let order = self
            .store
            .order(order_id)
            .await
            .map_err(StageError::retry)?;
        let Some(order) = order else {
            return Err(StageError::Permanent(format!(
                "order {order_id} does not exist"
            )));
        };
        match (order.status, order.step) {
            (OrderStatus::Processing, Some(FinalizeStep::SubmitCt)) => {}
            _ => return Ok(order.job_for_current_step().into_iter().collect()),
        }
        let serial = order
            .certificate_serial
            .clone()
            .ok_or_else(|| StageError::Permanent("order at submit-ct has no serial".into()))?;
        let cert = self
            .store
            .certificate(&serial)
            .await
            .map_err(StageError::retry)?
            .ok_or_else(|| StageError::Permanent(format!("serial {serial} not on record")))?;
        let issuer = self.issuer_of(&cert).await?;
        let precert = cert.precert_der.ok_or_else(|| {
            StageError::Permanent(format!("serial {serial} has no precertificate"))
        })?;
        let deadline = order.finalize_deadline.unwrap_or(i64::MAX);
        let remaining = deadline.saturating_sub(now_ms());
        if remaining <= 0 {
            return self.fail_past_deadline(order_id, "no attempt left").await;
        }
        // One attempt never runs past the order's deadline.
        let policy = SubmitPolicy {
            deadline: self
                .policy
                .deadline
                .min(Duration::from_millis(remaining as u64)),
            ..self.policy.clone()
        };
        let scts = match submit_precert(
            &self.client,
            &self.logs,
            &precert,
            &issuer.certificate_der,
            &policy,
        )
        .await
        {
            Ok(scts) => scts,
            Err(e) if !e.is_retryable() => {
                // The configuration (or the certificate) can never meet the policy.
                warn!(order_id, serial, error = %e, "CT submission cannot succeed");
                let problem = Problem::new(
                    ProblemKind::ServerInternal,
                    "the CA's Certificate Transparency configuration cannot log this \
                         certificate; please report this to the CA",
                );
                self.store
                    .fail_order(order_id, &problem)
                    .await
                    .map_err(StageError::retry)?;
                return Ok(vec![]);
            }
            Err(e) if now_ms() < deadline => {
                // Logs may come back; keep trying until the order's deadline. The
                // step stays alive meanwhile, so the sweeper does not start a second
                // chain of attempts.
                let alive = now_ms() + self.step_timeout.as_millis() as i64;
                self.store
                    .extend_step_deadline(order_id, FinalizeStep::SubmitCt, alive)
                    .await
                    .map_err(StageError::retry)?;
                return Err(StageError::retry(format!("CT submission: {e}")));
            }
            Err(e) => return self.fail_past_deadline(order_id, &e.to_string()).await,
        };
        let list: Vec<ct::Sct> = scts.iter().map(|s| s.sct.clone()).collect();
        let extension = ct::encode_sct_list_extension(&list)
            .map_err(|e| StageError::Permanent(e.to_string()))?;
        let deadline = now_ms() + self.step_timeout.as_millis() as i64;
        if !self
            .store
            .store_scts(order_id, &serial, &extension, deadline)
            .await
            .map_err(StageError::retry)?
        {
            // Another delivery stored its SCTs first and sent the order on.
            info!(order_id, serial, "SCTs already stored by another delivery");
            return Ok(vec![]);
        }
        let logs: Vec<&str> = scts.iter().map(|s| s.log_name.as_str()).collect();
        info!(order_id, serial, ?logs, "SCTs obtained");
        Ok(vec![Job::SignFinal {
            order_id: order_id.to_string(),
        }])
    }

    async fn fail_past_deadline(&self, order_id: &str, why: &str) -> Result<Vec<Job>, StageError> {
        warn!(
            order_id,
            error = why,
            "no SCTs before the finalize deadline"
        );
        let problem = Problem::new(
            ProblemKind::ServerInternal,
            "the Certificate Transparency logs did not provide the SCTs this certificate needs \
             before the finalization deadline; please retry the order later",
        );
        self.store
            .fail_order(order_id, &problem)
            .await
            .map_err(StageError::retry)?;
        Ok(vec![])
    }

    /// The certificate that signed `cert`, as the signer recorded it: what
    /// a log needs after the certificate to check it.
    async fn issuer_of(
        &self,
        cert: &store::CertificateRecord,
    ) -> Result<std::sync::Arc<store::Issuer>, StageError> {
        self.store
            .issuer(cert.issuer_id.as_deref())
            .await
            .map_err(StageError::retry)?
            .ok_or_else(|| {
                StageError::Permanent(format!(
                    "serial {}: its issuer is not recorded",
                    cert.serial
                ))
            })
    }

    /// Best effort: whatever happens, the order (already `valid`) is untouched.
    async fn submit_final(&self, order_id: &str, attempt: u32) -> Result<Vec<Job>, StageError> {
        let read = async {
            let Some(order) = self.store.order(order_id).await? else {
                return Ok(None);
            };
            let Some(serial) = order.certificate_serial else {
                return Ok(None);
            };
            self.store.certificate(&serial).await
        };
        let cert = match read.await {
            Ok(Some(cert)) => cert,
            Ok(None) => return Ok(vec![]),
            Err(e) if attempt < SUBMIT_FINAL_ATTEMPTS => return Err(StageError::retry(e)),
            Err(e) => {
                warn!(order_id, error = %e, "final certificate not logged: database unavailable");
                return Ok(vec![]);
            }
        };
        let (CertificateState::Issued, Some(final_der)) = (cert.state, &cert.final_der) else {
            return Ok(vec![]);
        };
        let issuer = match self.issuer_of(&cert).await {
            Ok(issuer) => issuer,
            Err(e) => {
                warn!(order_id, error = %e, "final certificate not logged: no issuer");
                return Ok(vec![]);
            }
        };
        match submit_final(
            &self.client,
            &self.logs,
            final_der,
            &issuer.certificate_der,
            &self.policy,
        )
        .await
        {
            Ok(results) => {
                let logged: Vec<&str> = results
                    .iter()
                    .filter(|r| r.result.is_ok())
                    .map(|r| r.log_name.as_str())
                    .collect();
                info!(
                    order_id,
                    serial = cert.serial,
                    ?logged,
                    tried = results.len(),
                    "final certificate submitted to CT logs"
                );
            }
            Err(e) => {
                warn!(order_id, serial = cert.serial, error = %e, "final certificate not logged")
            }
        }
        Ok(vec![])
    }
}

#[async_trait]
impl Handler for CtSubmitter {
    fn stage(&self) -> &'static str {
        "ct-submitter"
    }

    async fn handle(&self, job: &Job, attempt: u32) -> Result<Vec<Job>, StageError> {
        match job {
            Job::SubmitCt { order_id } => self.submit_ct(order_id).await,
            Job::SubmitFinal { order_id } => self.submit_final(order_id, attempt).await,
            other => Err(StageError::Permanent(format!(
                "ct-submitter got {}",
                other.name()
            ))),
        }
    }

    async fn give_up(&self, job: &Job, reason: &str) {
        match job {
            // Logging the final certificate never affects its order.
            Job::SubmitFinal { order_id } => {
                warn!(order_id, reason, "final certificate not logged");
            }
            _ => self.store.give_up_order(job.subject_id(), reason).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runner never gives up before any realistic finalize deadline
    /// (here an hour), and never pauses long between attempts, so a log that
    /// comes back is used within seconds.
    #[test]
    fn retries_outlast_the_deadline_with_short_pauses() {
        let config = runner_config(RunnerConfig::default());
        let mut waited = Duration::ZERO;
        let mut attempt = 1;
        while waited < Duration::from_secs(3600) {
            assert!(attempt < config.max_attempts, "gave up after {waited:?}");
            let pause = config.backoff(attempt);
            assert!(pause <= MAX_RETRY_DELAY, "{pause:?}");
            waited += pause;
            attempt += 1;
        }
        // The other settings are kept.
        assert_eq!(config.concurrency, RunnerConfig::default().concurrency);
        assert_eq!(config.backoff(1), RunnerConfig::default().backoff(1));
    }
}
