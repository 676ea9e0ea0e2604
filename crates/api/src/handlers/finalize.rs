//! Finalize (RFC 8555 §7.4): re-checks the order's names against the
//! identifier policy in force (the blocklist may have grown since
//! newOrder), checks the CSR (its key neither on the blocklist of
//! compromised keys nor on a Debian weak-key list), moves the order to
//! `processing` with one conditional UPDATE and enqueues the pipeline's
//! first job; then answers at once (async) or waits for the pipeline up to
//! the policy's budget (sync, hybrid). An answer still `processing` is
//! recorded for the compatibility report: did the client come back?

use super::auth::{Body, KeyRule, PathId, authenticate};
use super::order::{order_reply, owned_order};
use super::{ApiResult, Shared};
use crate::error::ApiError;
use crate::{Api, FinalizeMode, compat, csr};
use axum::extract::State;
use axum::http::{HeaderMap, Uri, header};
use axum::response::IntoResponse;
use domain::{OrderStatus, Problem, ProblemKind};
use proto::Job;
use queue::Message;
use serde::Deserialize;
use std::time::Duration;
use store::{BeginFinalize, Order, now_ms};
use tokio::sync::broadcast;

#[derive(Deserialize)]
struct FinalizePayload {
    csr: String,
}

pub async fn finalize(
    State(api): Shared,
    PathId(id): PathId,
    headers: HeaderMap,
    uri: Uri,
    Body(body): Body,
) -> ApiResult {
    let req = authenticate(&api, &headers, &uri, &body, KeyRule::Kid).await?;
    let account = req.account();
    let (order, authzs) = owned_order(&api, &id, account).await?;
    let status = api.order_status(&order, &authzs);
    if status != OrderStatus::Ready {
        return Err(ApiError::new(
            ProblemKind::OrderNotReady,
            format!("order is {status}, not ready; finalize needs every authorization valid"),
        ));
    }
    if req.post_as_get {
        return Err(ApiError::new(
            ProblemKind::Malformed,
            "finalize needs a payload with a csr",
        ));
    }
    recheck_identifiers(&api, &order)?;
    let payload: FinalizePayload = req.json()?;
    let names: Vec<String> = order.identifiers.iter().map(|i| i.value.clone()).collect();
    let checked = csr::check_csr(
        &payload.csr,
        &order.identifiers,
        req.key.public_key_spki_der(),
        &api.config.debian_weak_keys,
    )?;
    super::account::refuse_blocked_key(
        &api,
        &checked.public_key_spki_der,
        ProblemKind::BadCsr,
        "the CSR's key",
    )
    .await?;
    let now = now_ms();
    let names_policy = &api.config.identifiers;
    api.rate_limiter
        .check_certificate(&api.store, &names, names_policy, now)
        .await?;
    let policy = api.config.finalize.get();
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mode = policy.mode_for(time::OffsetDateTime::now_utc(), &account.id, user_agent);
    // Did the client come back after a `processing` answer? (compatibility
    // report). An async answer is `processing` by definition, so its
    // observation commits with the transition; the others are recorded
    // below if the wait ends with the order still `processing`.
    let observation = {
        let (client_product, client_version) = compat::client_of(user_agent);
        store::FinalizeObservation {
            order_id: id.clone(),
            account_id: account.id.clone(),
            user_agent: user_agent.chars().take(256).collect(),
            client_product,
            client_version,
            mode: mode.as_str().to_string(),
            finalized_at: now,
            first_poll_at: None,
            polls: 0,
            downloaded_at: None,
        }
    };
    // This request's trace id (its span is the root of the order's trace),
    // shown by `kiln order show`.
    let trace_id = queue::trace::current_trace_id();
    let begin = BeginFinalize {
        order_id: &id,
        csr_der: &checked.der,
        now,
        step_deadline: now + api.config.step_timeout.as_millis() as i64,
        finalize_deadline: now + api.config.finalize_timeout.as_millis() as i64,
        trace_id: trace_id.as_deref(),
    };
    let observed_now = (mode == FinalizeMode::Async).then_some(&observation);
    if !api
        .store
        .begin_finalize_observed(begin, observed_now)
        .await?
    {
        // Someone else moved it first (a concurrent finalize).
        return Err(ApiError::new(
            ProblemKind::OrderNotReady,
            "order is already being finalized",
        ));
    }
    api.rate_limiter
        .note_certificate(&api.store, &names, names_policy, now)
        .await;
    // Listen before the first job exists, so the finish cannot be missed.
    let done = match mode {
        FinalizeMode::Async => None,
        _ => Some(api.store.subscribe_done().await),
    };
    // The order is durably `processing`; if this publish is lost the sweeper
    // re-drives it once the step deadline passes.
    if let Err(e) = api
        .queue
        .publish(Message::new(Job::CheckCaa {
            order_id: id.clone(),
        }))
        .await
    {
        tracing::warn!(order_id = %id, error = %e, "enqueueing finalization failed; the sweeper will re-drive it");
    }
    tracing::info!(order_id = %id, mode = mode.as_str(), "order finalizing");
    let order = match (mode, done) {
        // Answer with the order as this request left it: `processing`,
        // whatever the pipeline has done since.
        (FinalizeMode::Async, _) | (_, None) => Order {
            status: OrderStatus::Processing,
            ..order
        },
        (_, Some(done)) => {
            let budget = match mode {
                FinalizeMode::Sync => policy.sync_timeout,
                _ => policy.hybrid_budget(api.latency.p95()),
            };
            wait_until_done(&api, done, &id, budget).await;
            api.store
                .order(&id)
                .await?
                .ok_or_else(|| ApiError::not_found("order"))?
        }
    };
    if order.status == OrderStatus::Processing
        && observed_now.is_none()
        && let Err(e) = api.store.record_finalize_observation(&observation).await
    {
        tracing::warn!(order_id = %id, error = %e, "recording the compatibility observation failed");
    }
    Ok(order_reply(&api, &order, &authzs).into_response())
}

/// Refuses, as newOrder would now, an order naming an identifier the policy
/// in force rejects: the policy is built at start-up, so one an operator
/// blocked (`[api] blocked_names`, its file) after the order was created
/// applies once the api restarts, before anything is signed for it. The
/// order stays `ready`.
fn recheck_identifiers(api: &Api, order: &Order) -> Result<(), ApiError> {
    let rejected: Vec<Problem> = order
        .identifiers
        .iter()
        .filter_map(|id| {
            let problem = api.config.identifiers.check_identifier(id).err()?;
            Some(problem.for_identifier(id.clone()))
        })
        .collect();
    if rejected.is_empty() {
        return Ok(());
    }
    let detail = format!(
        "{} identifier(s) of this order can no longer be issued for",
        rejected.len()
    );
    Err(Problem::new(ProblemKind::RejectedIdentifier, detail)
        .with_subproblems(rejected)
        .into())
}

/// Waits (without polling the database) until the order finishes or the
/// budget runs out.
async fn wait_until_done(
    api: &Api,
    mut done: broadcast::Receiver<String>,
    order_id: &str,
    budget: Duration,
) {
    let deadline = tokio::time::Instant::now() + budget;
    loop {
        match tokio::time::timeout_at(deadline, done.recv()).await {
            Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => return,
            Ok(Ok(id)) if id == order_id => return,
            Ok(Ok(_)) => {}
            // Missed some ids: look once, then keep listening.
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                if let Ok(Some(order)) = api.store.order(order_id).await
                    && order.status != OrderStatus::Processing
                {
                    return;
                }
            }
        }
    }
}
