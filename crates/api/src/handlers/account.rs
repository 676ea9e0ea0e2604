//! Accounts (RFC 8555 §7.3): new-account, reading, updating and
//! deactivating an account, its orders list, and key change.

use super::auth::{Body, KeyRule, PathId, authenticate, not_yours};
use super::response::Reply;
use super::{ApiResult, Shared, random_id};
use crate::error::ApiError;
use crate::{Api, jws};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use domain::{AccountStatus, ProblemKind};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use store::{Account, now_ms};

/// Orders listed per page of an account's orders URL.
const ORDERS_PAGE: i64 = 100;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewAccountPayload {
    #[serde(default)]
    contact: Option<Vec<String>>,
    #[serde(default)]
    only_return_existing: bool,
    #[serde(default)]
    terms_of_service_agreed: Option<bool>,
}

fn check_contacts(contact: &[String]) -> Result<(), ApiError> {
    if contact.len() > 10 {
        return Err(ApiError::new(
            ProblemKind::InvalidContact,
            "at most 10 contacts",
        ));
    }
    for c in contact {
        let Some(address) = c.strip_prefix("mailto:") else {
            return Err(ApiError::new(
                ProblemKind::UnsupportedContact,
                format!("contact {c:?}: only mailto: URLs are supported"),
            ));
        };
        let valid = address.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty() && host.contains('.') && !host.contains(['@', ',', ' '])
        }) && !address.contains(['?', ' ', ',']);
        if !valid {
            return Err(ApiError::new(
                ProblemKind::InvalidContact,
                format!("contact {c:?} is not a single valid email address"),
            ));
        }
    }
    Ok(())
}

pub async fn new_account(
    State(api): Shared,
    headers: HeaderMap,
    uri: Uri,
    Body(body): Body,
) -> ApiResult {
    let req = authenticate(&api, &headers, &uri, &body, KeyRule::Jwk).await?;
    let payload: NewAccountPayload = req.json()?;
    let thumbprint = req.key.thumbprint();
    if let Some(existing) = api.store.account_by_thumbprint(&thumbprint).await? {
        // RFC 8555 §7.3.1: an existing key answers 200 with its account.
        return Ok(Reply::ok(api.account_json(&existing))
            .location(api.account_url(&existing.id))
            .into_response());
    }
    if payload.only_return_existing {
        return Err(ApiError::new(
            ProblemKind::AccountDoesNotExist,
            "no account exists for this key",
        ));
    }
    jws::check_account_key(&req.key)?;
    if payload.terms_of_service_agreed == Some(false) && api.config.terms_of_service.is_some() {
        return Err(ApiError::new(
            ProblemKind::Malformed,
            "the terms of service must be agreed to",
        ));
    }
    let contact = payload.contact.unwrap_or_default();
    check_contacts(&contact)?;
    let account = Account {
        id: random_id(12),
        key_thumbprint: thumbprint,
        jwk: req.key.to_json(),
        contact,
        status: AccountStatus::Valid,
        created_at: now_ms(),
    };
    let (stored, created) = api.store.insert_account(&account).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(Reply::ok(api.account_json(&stored))
        .status(status)
        .location(api.account_url(&stored.id))
        .into_response())
}

#[derive(Deserialize)]
struct AccountUpdate {
    #[serde(default)]
    contact: Option<Vec<String>>,
    #[serde(default)]
    status: Option<String>,
}

pub async fn account(
    State(api): Shared,
    PathId(id): PathId,
    headers: HeaderMap,
    uri: Uri,
    Body(body): Body,
) -> ApiResult {
    let req = authenticate(&api, &headers, &uri, &body, KeyRule::Kid).await?;
    if req.account().id != id {
        return Err(not_yours("account"));
    }
    let update: AccountUpdate = req.json()?;
    match update.status.as_deref() {
        None => {}
        Some("deactivated") => {
            let store = api.store.clone();
            let account_id = id.clone();
            change_account(&api, &id, async move {
                store.deactivate_account(&account_id).await
            })
            .await??;
            api.account_keys.forget(&req.account().key_thumbprint);
        }
        Some(other) => {
            return Err(ApiError::new(
                ProblemKind::Malformed,
                format!("an account's status can only be set to \"deactivated\", not {other:?}"),
            ));
        }
    }
    if let Some(contact) = update.contact.filter(|_| update.status.is_none()) {
        check_contacts(&contact)?;
        let store = api.store.clone();
        let account_id = id.clone();
        change_account(&api, &id, async move {
            store.update_account_contact(&account_id, &contact).await
        })
        .await??;
    }
    let account = api
        .store
        .account(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    Ok(Reply::ok(api.account_json(&account)).into_response())
}

pub async fn account_orders(
    State(api): Shared,
    PathId(id): PathId,
    headers: HeaderMap,
    uri: Uri,
    Body(body): Body,
) -> ApiResult {
    let req = authenticate(&api, &headers, &uri, &body, KeyRule::Kid).await?;
    req.require_post_as_get()?;
    if req.account().id != id {
        return Err(not_yours("account"));
    }
    let page: i64 = uri
        .query()
        .and_then(|q| q.strip_prefix("page="))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let Some(offset) = page.checked_mul(ORDERS_PAGE).filter(|o| *o >= 0) else {
        return Err(ApiError::new(
            ProblemKind::Malformed,
            format!("no orders page {page}"),
        ));
    };
    let ids = api
        .store
        .order_ids_for_account(&id, offset, ORDERS_PAGE + 1)
        .await?;
    let more = ids.len() as i64 > ORDERS_PAGE;
    let urls: Vec<String> = ids
        .iter()
        .take(ORDERS_PAGE as usize)
        .map(|o| api.order_url(o))
        .collect();
    let mut reply = Reply::ok(json!({ "orders": urls }));
    if more {
        let next = api.url(&format!("/acme/acct/{id}/orders?page={}", page + 1));
        reply = reply.link(&next, "next");
    }
    Ok(reply.into_response())
}

pub async fn key_change(
    State(api): Shared,
    headers: HeaderMap,
    uri: Uri,
    Body(body): Body,
) -> ApiResult {
    let req = authenticate(&api, &headers, &uri, &body, KeyRule::Kid).await?;
    let account = req.account();
    let new_key = jws::verify_key_change(
        &req.payload,
        &req.url,
        &api.account_url(&account.id),
        &req.key,
    )?;
    let (store, old) = (api.store.clone(), account.clone());
    let (thumbprint, jwk) = (new_key.thumbprint(), new_key.to_json());
    let changed = change_account(&api, &account.id, async move {
        store
            .change_account_key(&old.id, &old.key_thumbprint, &thumbprint, &jwk)
            .await
    })
    .await?;
    match changed {
        Ok(true) => api.account_keys.forget(&account.key_thumbprint),
        Ok(false) => {
            return Err(ApiError::new(
                ProblemKind::Malformed,
                "the account key changed concurrently; retry",
            )
            .with_status(StatusCode::CONFLICT));
        }
        Err(store::StoreError::Conflict(other)) => {
            let mut err = ApiError::new(
                ProblemKind::Malformed,
                "the new key already belongs to an account",
            )
            .with_status(StatusCode::CONFLICT);
            err.location = Some(api.account_url(&other));
            return Err(err);
        }
        Err(e) => return Err(e.into()),
    }
    let account = api
        .store
        .account(&account.id)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    Ok(Reply::ok(api.account_json(&account)).into_response())
}

/// Runs `write`, a change to account `id`, to its end, then forgets the
/// account's cached row (see `account_cache`). In a task of its own: the
/// write commits on the writer thread even if this request is dropped
/// meanwhile (a reset stream, a client gone), and the forget must follow
/// the commit whatever becomes of the request, or the cache would keep
/// serving the row from before it.
async fn change_account<T: Send + 'static>(
    api: &Arc<Api>,
    id: &str,
    write: impl Future<Output = store::Result<T>> + Send + 'static,
) -> Result<store::Result<T>, ApiError> {
    let (api, id) = (api.clone(), id.to_string());
    tokio::spawn(async move {
        let written = write.await;
        api.accounts.forget(&id);
        written
    })
    .await
    .map_err(|e| ApiError::internal(format!("changing the account: {e}")))
}
