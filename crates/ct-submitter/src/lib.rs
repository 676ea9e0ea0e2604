//! The `ct-submitter` stage: obtain SCTs for an order's precertificate from
//! enough Certificate Transparency logs (RFC 6962), verify them, and store
//! the SCT list the final certificate will embed.

#![forbid(unsafe_code)]

pub mod submit;

pub use submit::{CtLog, EmbeddedSct, SubmitPolicy, submit_precert};

use async_trait::async_trait;
use domain::{FinalizeStep, OrderStatus, Problem, ProblemKind};
use proto::Job;
use queue::{Handler, StageError, job_for_step};
use std::time::Duration;
use store::{Store, now_ms};
use tracing::{info, warn};

pub struct CtSubmitter {
    pub store: Store,
    pub client: reqwest::Client,
    pub logs: Vec<CtLog>,
    pub policy: SubmitPolicy,
    /// The issuing intermediate (DER), sent after the precertificate.
    pub issuer_der: Vec<u8>,
    pub step_timeout: Duration,
}

#[async_trait]
impl Handler for CtSubmitter {
    fn stage(&self) -> &'static str {
        "ct-submitter"
    }

    async fn handle(&self, job: &Job, _attempt: u32) -> Result<Vec<Job>, StageError> {
        let Job::SubmitCt { order_id } = job else {
            return Err(StageError::Permanent(format!(
                "ct-submitter got {}",
                job.name()
            )));
        };
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
            (OrderStatus::Processing, Some(step)) => return Ok(vec![job_for_step(step, order_id)]),
            _ => return Ok(vec![]),
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
        let precert = cert.precert_der.ok_or_else(|| {
            StageError::Permanent(format!("serial {serial} has no precertificate"))
        })?;
        let scts = match submit_precert(
            &self.client,
            &self.logs,
            &precert,
            &self.issuer_der,
            &self.policy,
        )
        .await
        {
            Ok(scts) => scts,
            Err(e) => {
                // Logs may come back; keep trying until the order's deadline.
                let deadline = order.finalize_deadline.unwrap_or(i64::MAX);
                if now_ms() < deadline {
                    return Err(StageError::retry(format!("CT submission: {e}")));
                }
                warn!(order_id, error = %e, "no SCTs before the finalize deadline");
                let problem = Problem::new(
                    ProblemKind::ServerInternal,
                    "Certificate Transparency logs did not answer in time; please retry the order",
                );
                self.store
                    .fail_order(order_id, &problem)
                    .await
                    .map_err(StageError::retry)?;
                return Ok(vec![]);
            }
        };
        let list: Vec<ct::Sct> = scts.iter().map(|s| s.sct.clone()).collect();
        let extension = ct::encode_sct_list_extension(&list)
            .map_err(|e| StageError::Permanent(e.to_string()))?;
        let deadline = now_ms() + self.step_timeout.as_millis() as i64;
        if self
            .store
            .store_scts(order_id, &serial, &extension, deadline)
            .await
            .map_err(StageError::retry)?
        {
            let logs: Vec<&str> = scts.iter().map(|s| s.log_name.as_str()).collect();
            info!(order_id, serial, ?logs, "SCTs obtained");
        }
        Ok(vec![Job::SignFinal {
            order_id: order_id.clone(),
        }])
    }

    async fn give_up(&self, job: &Job, reason: &str) {
        self.store.give_up_order(job.subject_id(), reason).await;
    }
}
