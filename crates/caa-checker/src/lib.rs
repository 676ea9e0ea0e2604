//! The `caa-checker` stage: before a finalizing order is signed, recheck CAA
//! (RFC 8659, RFC 8657) for every identifier whose authorization was
//! validated longer ago than the recheck window. A fresh authorization was
//! checked at validation time and is not looked up again.

#![forbid(unsafe_code)]

pub mod config;

use async_trait::async_trait;
use dns::Dns;
use dns::caa::CaaPolicy;
use domain::{FinalizeStep, OrderStatus, Problem, ProblemKind};
use proto::{CaaName, Job};
use queue::{Handler, StageError};
use std::time::Duration;
use store::{Authz, Store, now_ms};
use tracing::{info, warn};

/// Deliveries of one check while DNS fails (SERVFAIL, timeout) before the
/// order ends `invalid` with `dns`; the runner's backoff spaces them out.
pub const DNS_ATTEMPTS: u32 = 4;

pub struct CaaChecker {
    pub store: Store,
    pub dns: Dns,
    pub policy: CaaPolicy,
    /// Authorizations validated longer ago than this are rechecked (the
    /// CA/B Forum allows reuse of a CAA check for 8 hours).
    pub recheck_after: Duration,
    /// Deadline given to the next step before the sweeper re-drives it.
    pub step_timeout: Duration,
    /// Account URLs are `{account_url_prefix}{id}`, for `accounturi`.
    pub account_url_prefix: String,
    /// The remote perspectives that repeat a recheck that passed (MPIC,
    /// BR 3.2.2.9); `None` asks none.
    pub corroboration: Option<mpic::Corroboration>,
}

#[async_trait]
impl Handler for CaaChecker {
    fn stage(&self) -> &'static str {
        "caa-checker"
    }

    async fn handle(&self, job: &Job, attempt: u32) -> Result<Vec<Job>, StageError> {
        match job {
            Job::CheckCaa { order_id } => self.check(order_id, attempt).await,
            Job::TallyCaa { order_id } => self.tally(order_id).await,
            other => Err(StageError::Permanent(format!(
                "caa-checker got {}",
                other.name()
            ))),
        }
    }

    async fn give_up(&self, job: &Job, reason: &str) {
        self.store.give_up_order(job.subject_id(), reason).await;
    }
}

impl CaaChecker {
    async fn check(&self, order_id: &str, attempt: u32) -> Result<Vec<Job>, StageError> {
        let order = self
            .store
            .order_with_authzs(order_id)
            .await
            .map_err(StageError::retry)?;
        let Some((order, authzs)) = order else {
            return Err(StageError::Permanent(format!(
                "order {order_id} does not exist"
            )));
        };
        match (order.status, order.step) {
            (OrderStatus::Processing, Some(FinalizeStep::CheckCaa)) => {}
            // Already past this stage: make sure the next step has its job.
            _ => return Ok(order.job_for_current_step().into_iter().collect()),
        }
        let stale_before = now_ms() - self.recheck_after.as_millis() as i64;
        // CAA is for domain names: an IP address has no record to recheck.
        let stale: Vec<&Authz> = authzs
            .iter()
            .filter(|a| a.validated_at.is_none_or(|at| at < stale_before))
            .filter(|a| {
                domain::Identifier::from_authz_value(&a.identifier).kind != domain::Identifier::IP
            })
            .collect();
        if !stale.is_empty() {
            // Each name is rechecked with the method that validated it, so
            // that `validationmethods` is honoured at finalize too.
            let methods = self
                .store
                .validation_methods(order_id)
                .await
                .map_err(StageError::retry)?;
            let account_uri = format!("{}{}", self.account_url_prefix, order.account_id);
            let names: Vec<CaaName> = stale
                .iter()
                .map(|a| CaaName {
                    name: a.requested_name(),
                    method: methods.get(&a.id).map(|m| m.as_str().to_string()),
                })
                .collect();
            let requests = mpic::caa_requests(&names, &account_uri);
            info!(
                order_id,
                rechecked = names.len(),
                "rechecking CAA for stale authorizations"
            );
            metrics::counter!("kiln_caa_recheck_names_total").increment(names.len() as u64);
            let checked = dns::caa::check_all(&self.dns, &requests, &self.policy).await;
            record_recheck(checked.as_ref().err().map(|problem| problem.kind));
            if let Err(problem) = checked {
                // DNS trouble may pass; a CAA record forbidding us will not.
                if problem.kind == ProblemKind::Dns && attempt < DNS_ATTEMPTS {
                    return Err(StageError::retry(problem));
                }
                warn!(order_id, ?problem, "CAA forbids issuance");
                self.store
                    .fail_order(order_id, &for_client(problem))
                    .await
                    .map_err(StageError::retry)?;
                return Ok(vec![]);
            }
            if let Some(corroboration) = &self.corroboration {
                let subject = store::caa_recheck_subject(order_id);
                let tally = Job::TallyCaa {
                    order_id: order_id.to_string(),
                };
                let ask = |r: &mpic::RemotePerspective| Job::CorroborateCaa {
                    order_id: order_id.to_string(),
                    perspective: r.name.clone(),
                    account_id: order.account_id.clone(),
                    names: names.clone(),
                };
                return corroboration
                    .fan_out(&self.store, &subject, tally, ask)
                    .await;
            }
        }
        self.advance(order_id).await
    }

    /// Decides the recheck's corroboration once it can be.
    async fn tally(&self, order_id: &str) -> Result<Vec<Job>, StageError> {
        let Some(corroboration) = &self.corroboration else {
            return Ok(vec![]);
        };
        let Some((order, _)) = self
            .store
            .order_with_authzs(order_id)
            .await
            .map_err(StageError::retry)?
        else {
            return Ok(vec![]);
        };
        if (order.status, order.step) != (OrderStatus::Processing, Some(FinalizeStep::CheckCaa)) {
            return Ok(vec![]);
        }
        let subject = store::caa_recheck_subject(order_id);
        match corroboration.tally(&self.store, &subject, None).await? {
            None => Ok(vec![]),
            Some(Ok(())) => self.advance(order_id).await,
            Some(Err(problem)) => {
                warn!(order_id, ?problem, "CAA recheck not corroborated");
                let mut problem = problem;
                problem.kind = ProblemKind::Caa;
                self.store
                    .fail_order(order_id, &problem)
                    .await
                    .map_err(StageError::retry)?;
                Ok(vec![])
            }
        }
    }

    /// The recheck passed: on to signing.
    async fn advance(&self, order_id: &str) -> Result<Vec<Job>, StageError> {
        let deadline = now_ms() + self.step_timeout.as_millis() as i64;
        self.store
            .advance_step(
                order_id,
                FinalizeStep::CheckCaa,
                FinalizeStep::SignPrecert,
                deadline,
            )
            .await
            .map_err(StageError::retry)?;
        Ok(vec![Job::SignPrecert {
            order_id: order_id.to_string(),
        }])
    }
}

/// The CAA problem as the client sees it in `order.error`. A refusal by a
/// CAA record keeps its detail (the record and why it refuses: the client's
/// to fix). A failed lookup's detail carries the resolver's error text,
/// which may name the CA's resolvers or OS errors: the client gets a fixed
/// one naming the identifier (the log keeps the original).
fn for_client(mut problem: Problem) -> Problem {
    if problem.kind == ProblemKind::Dns {
        let name = problem.identifier.as_ref().map(|i| i.value.clone());
        problem.detail = match name {
            Some(name) => format!(
                "the CAA lookup for {name} failed (SERVFAIL, a timeout or no answer); \
                 this may be temporary, please retry"
            ),
            None => "a CAA lookup failed (SERVFAIL, a timeout or no answer); this may be \
                     temporary, please retry"
                .into(),
        };
    }
    problem.subproblems = problem.subproblems.into_iter().map(for_client).collect();
    problem
}

/// `kiln_caa_rechecks_total{result}`: one per order whose stale
/// authorizations were rechecked — `allowed`, or a failure: `forbidden` (a
/// CAA record refuses Kiln) or `dns_error` (lookup failed; retried). Every
/// result's series exists from the first recheck on, at zero.
fn record_recheck(failure: Option<ProblemKind>) {
    let result = match failure {
        None => "allowed",
        Some(ProblemKind::Dns) => "dns_error",
        Some(_) => "forbidden",
    };
    for each in ["allowed", "forbidden", "dns_error"] {
        metrics::counter!("kiln_caa_rechecks_total", "result" => each)
            .increment(u64::from(each == result));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Identifier;

    #[test]
    fn lookup_failures_lose_the_resolver_text_and_refusals_keep_theirs() {
        let refused = Problem::new(
            ProblemKind::Caa,
            "CAA record for a.test prevents issuance for a.test: issuer other.ca",
        )
        .for_identifier(Identifier::dns("a.test"));
        let failed = Problem::new(
            ProblemKind::Dns,
            "CAA lookup for b.test failed: io error: Connection refused (os error 111) \
             from 10.1.2.3:53",
        )
        .for_identifier(Identifier::dns("b.test"));
        let both = Problem::new(ProblemKind::Caa, "CAA check failed for 2 of 2 identifiers")
            .with_subproblems(vec![refused.clone(), failed.clone()]);
        let shown = for_client(both);
        assert_eq!(shown.detail, "CAA check failed for 2 of 2 identifiers");
        assert_eq!(shown.subproblems[0], refused);
        let dns = &shown.subproblems[1];
        assert_eq!(dns.kind, ProblemKind::Dns);
        assert!(dns.detail.contains("b.test"), "{}", dns.detail);
        for internal in ["os error", "10.1.2.3", "Connection refused"] {
            assert!(!format!("{shown:?}").contains(internal), "{shown:?}");
        }
    }
}
