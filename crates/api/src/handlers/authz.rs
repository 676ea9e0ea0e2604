//! Authorizations and challenges (RFC 8555 §7.5): reading and deactivating
//! an authorization, reading a challenge, and answering one, which starts
//! its validation through the queue.

use super::auth::{Body, KeyRule, PathId, authenticate, not_yours};
use super::response::{Reply, processing_retry_after};
use super::{ApiResult, Shared};
use crate::Api;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::IntoResponse;
use domain::{AuthzStatus, ChallengeStatus, ProblemKind};
use proto::Job;
use queue::Message;
use serde::Deserialize;
use serde_json::Value;
use store::{Account, Authz, Challenge, now_ms};

/// The authorization with its challenges, if the account owns it.
async fn owned_authz(
    api: &Api,
    id: &str,
    account: &Account,
) -> Result<(Authz, Vec<Challenge>), ApiError> {
    let (authz, challenges) = api
        .store
        .authz_with_challenges(id)
        .await?
        .ok_or_else(|| ApiError::not_found("authorization"))?;
    if authz.account_id != account.id {
        return Err(not_yours("authorization"));
    }
    Ok((authz, challenges))
}

#[derive(Deserialize)]
struct AuthzUpdate {
    #[serde(default)]
    status: Option<String>,
}

pub async fn authz(
    State(api): Shared,
    PathId(id): PathId,
    headers: HeaderMap,
    uri: Uri,
    Body(body): Body,
) -> ApiResult {
    let req = authenticate(&api, &headers, &uri, &body, KeyRule::Kid).await?;
    let (mut authz, mut challenges) = owned_authz(&api, &id, req.account()).await?;
    let update: AuthzUpdate = req.json()?;
    match update.status.as_deref() {
        None => {}
        Some("deactivated") => {
            if !api.store.deactivate_authz(&id).await? {
                return Err(ApiError::new(
                    ProblemKind::Malformed,
                    format!(
                        "an authorization that is {} cannot be deactivated",
                        authz.status
                    ),
                ));
            }
            (authz, challenges) = owned_authz(&api, &id, req.account()).await?;
        }
        Some(other) => {
            return Err(ApiError::new(
                ProblemKind::Malformed,
                format!(
                    "an authorization's status can only be set to \"deactivated\", not {other:?}"
                ),
            ));
        }
    }
    let processing = challenges
        .iter()
        .any(|c| c.status == ChallengeStatus::Processing);
    Ok(Reply::ok(api.authz_json(&authz, &challenges))
        .retry_after(processing_retry_after(&api, processing))
        .into_response())
}

pub async fn challenge(
    State(api): Shared,
    PathId(id): PathId,
    headers: HeaderMap,
    uri: Uri,
    Body(body): Body,
) -> ApiResult {
    let req = authenticate(&api, &headers, &uri, &body, KeyRule::Kid).await?;
    let (challenge, authz) = api
        .store
        .challenge_with_authz(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("challenge"))?;
    if authz.account_id != req.account().id {
        return Err(not_yours("authorization"));
    }
    let up = api.authz_url(&authz.id);
    if req.post_as_get {
        let processing = challenge.status == ChallengeStatus::Processing;
        return Ok(Reply::ok(api.challenge_json(&challenge, &authz.account_id))
            .link(&up, "up")
            .retry_after(processing_retry_after(&api, processing))
            .into_response());
    }
    // Any JSON object means "ready to be validated" (RFC 8555 §7.5.1).
    let _: serde_json::Map<String, Value> = req.json()?;
    let now = now_ms();
    let mut challenge = challenge;
    if challenge.status == ChallengeStatus::Pending {
        // The sweeper re-drives a validation not done by then, with the
        // same timeout again: one step timeout for every stage.
        let deadline = now + api.config.step_timeout.as_millis() as i64;
        if api.store.start_challenge(&id, deadline).await? {
            if let Err(e) = api
                .queue
                .publish(Message::new(Job::ValidateChallenge {
                    challenge_id: id.clone(),
                }))
                .await
            {
                tracing::warn!(challenge_id = %id, error = %e, "enqueueing validation failed; the sweeper will re-drive it");
            }
            // As this request left it, whatever the validator has done since.
            challenge.status = ChallengeStatus::Processing;
        } else if authz.status != AuthzStatus::Pending {
            return Err(ApiError::new(
                ProblemKind::Malformed,
                format!(
                    "the authorization is {}; its challenges can no longer be attempted",
                    authz.status
                ),
            ));
        } else {
            // Another request started it (or a sibling) first: show what it did.
            challenge = api
                .store
                .challenge(&id)
                .await?
                .ok_or_else(|| ApiError::not_found("challenge"))?;
        }
    }
    let processing = challenge.status == ChallengeStatus::Processing;
    Ok(Reply::ok(api.challenge_json(&challenge, &authz.account_id))
        .link(&up, "up")
        .retry_after(processing_retry_after(&api, processing))
        .into_response())
}
