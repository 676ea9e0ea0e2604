//! Accounts (RFC 8555 §7.3): new-account, reading, updating and
//! deactivating an account, its orders list, and key change. An account key
//! on the blocklist of compromised keys is refused (`badPublicKey`), as is a
//! deactivated account's key (`unauthorized`), and, when terms of service
//! are configured, a new account that does not agree to them.

use super::auth::{Body, KeyRule, PathId, authenticate, not_yours};
use super::response::Reply;
use super::{ApiResult, Shared, random_id};
use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::{Api, csr, jws};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
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
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    uri: Uri,
    Body(body): Body,
) -> ApiResult {
    let req = authenticate(&api, &headers, &uri, &body, KeyRule::Jwk).await?;
    let payload: NewAccountPayload = req.json()?;
    // A blocked key is refused even if an account has it: it is known to be
    // compromised, so its holder may not be the account's. The account's
    // own (kid) requests still work, so that it can change its key.
    refuse_blocked_key(
        &api,
        req.key.public_key_spki_der(),
        ProblemKind::BadPublicKey,
        "this account key",
    )
    .await?;
    req.key
        .refuse_if_debian_weak(&api.config.debian_weak_keys, "this account key")?;
    let thumbprint = req.key.thumbprint();
    if let Some(existing) = api.store.account_by_thumbprint(&thumbprint).await? {
        // §7.3.6: a deactivated account's key is accepted for nothing, not
        // even to find the account.
        if existing.status != AccountStatus::Valid {
            return Err(ApiError::new(
                ProblemKind::Unauthorized,
                format!(
                    "the account of this key is {}; use another key for a new account",
                    existing.status
                ),
            ));
        }
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
    if let Some(tos) = &api.config.terms_of_service
        && payload.terms_of_service_agreed != Some(true)
    {
        return Ok(terms_not_agreed(tos));
    }
    let contact = payload.contact.unwrap_or_default();
    check_contacts(&contact)?;
    let now = now_ms();
    let limiter = &api.rate_limiter;
    limiter.check_new_account(&api.store, client, now).await?;
    let account = Account {
        id: random_id(12),
        key_thumbprint: thumbprint,
        jwk: req.key.to_json(),
        contact,
        status: AccountStatus::Valid,
        created_at: now,
    };
    let (stored, created) = api.store.insert_account(&account).await?;
    if created {
        limiter.note_new_account(&api.store, client, now).await;
    }
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

/// newAccount without `"termsOfServiceAgreed": true` while terms of service
/// are configured (the directory's `meta.termsOfService`): refused, absent
/// as well as `false`. `malformed`, as Let's Encrypt answers, since the
/// request lacks what the directory asks for; with the terms' URL in a
/// `Link: rel="terms-of-service"` header, the hint RFC 8555 §7.3.3 gives a
/// client to show its user.
fn terms_not_agreed(tos: &str) -> Response {
    let mut response = ApiError::new(
        ProblemKind::Malformed,
        format!(
            "the terms of service ({tos}) must be agreed to: \
             send \"termsOfServiceAgreed\": true once the user has read them"
        ),
    )
    .into_response();
    if let Ok(link) = HeaderValue::from_str(&format!("<{tos}>;rel=\"terms-of-service\"")) {
        response.headers_mut().append(header::LINK, link);
    }
    response
}

/// Refuses a key on the blocklist of compromised keys (BR 6.1.1.3;
/// `store::blocked_keys`) with a problem of `kind`: `badPublicKey` for an
/// account key, `badCSR` for a certificate key. One primary-key read.
pub(super) async fn refuse_blocked_key(
    api: &Api,
    spki_der: &[u8],
    kind: ProblemKind,
    what: &str,
) -> Result<(), ApiError> {
    let digest = csr::key_digest(spki_der)?;
    if api.store.is_key_blocked(&digest).await? {
        return Err(ApiError::new(
            kind,
            format!(
                "{what} is on this CA's blocklist of compromised keys \
                 (e.g. a certificate for it was revoked for keyCompromise); generate a new key"
            ),
        ));
    }
    Ok(())
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
    // The new key passes every rule of a new account's: RSA shape and known
    // weaknesses (`pkix`, when the JWK is read), the account key policy, and
    // the blocklist.
    let new_key = jws::verify_key_change(
        &req.payload,
        &req.url,
        &api.account_url(&account.id),
        &req.key,
    )?;
    refuse_blocked_key(
        &api,
        new_key.public_key_spki_der(),
        ProblemKind::BadPublicKey,
        "the new account key",
    )
    .await?;
    new_key.refuse_if_debian_weak(&api.config.debian_weak_keys, "the new account key")?;
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
