//! Accounts (RFC 8555 §7.3): new-account, reading, updating and
//! deactivating an account, its orders list, and key change. An account key
//! on the blocklist of compromised keys is refused (`badPublicKey`), as is a
//! deactivated account's key (`unauthorized`), and, when terms of service
//! are configured, a new account that does not agree to them. A new
//! account's External Account Binding (§7.3.4) is verified here and bound
//! with the account's insert; required when so configured.

use super::auth::{Body, KeyRule, PathId, authenticate, not_yours};
use super::response::Reply;
use super::{ApiResult, Shared, random_id};
use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::jws::Jwk;
use crate::{Api, csr, jws};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::{AccountStatus, ProblemKind};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use store::{Account, EabBinding, now_ms};

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
    #[serde(default)]
    external_account_binding: Option<Value>,
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
    // Before the terms and contacts: a client without a binding learns
    // first that it needs one.
    let eab_key_id = match &payload.external_account_binding {
        Some(binding) => Some(verify_eab(&api, binding, &req.url, &req.key).await?),
        None if api.config.external_account_required => {
            return Err(ApiError::new(
                ProblemKind::ExternalAccountRequired,
                "this CA requires an externalAccountBinding in newAccount (RFC 8555 §7.3.4): \
                 sign it with the key id and HMAC key your CA operator gave you",
            ));
        }
        None => None,
    };
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
    let (stored, created) = match eab_key_id {
        None => api.store.insert_account(&account).await?,
        Some(key_id) => match api
            .store
            .insert_account_with_eab(&account, &key_id, now)
            .await?
        {
            EabBinding::Created(stored) => (stored, true),
            EabBinding::Existing(stored) => (stored, false),
            EabBinding::KeyUnavailable => return Err(eab_key_unusable(&key_id)),
        },
    };
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

/// The digest of an External Account Binding's HMAC `alg`, if allowed.
fn eab_digest(alg: &str) -> Option<MessageDigest> {
    match alg {
        "HS256" => Some(MessageDigest::sha256()),
        "HS384" => Some(MessageDigest::sha384()),
        "HS512" => Some(MessageDigest::sha512()),
        _ => None,
    }
}

fn eab_malformed(detail: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ProblemKind::Malformed,
        format!("externalAccountBinding: {detail}"),
    )
}

fn eab_key_unusable(key_id: &str) -> ApiError {
    let shown: String = key_id.chars().take(40).collect();
    ApiError::new(
        ProblemKind::Unauthorized,
        format!(
            "externalAccountBinding: key id {shown:?} is unknown, revoked or already bound \
             to an account; ask the CA operator for a new one"
        ),
    )
}

/// Checks an `externalAccountBinding` (RFC 8555 §7.3.4): a flattened JWS,
/// HMAC-signed with an unbound, unrevoked EAB key, over the account key,
/// whose `url` is the newAccount request's. Returns the key id to bind.
async fn verify_eab(
    api: &Api,
    binding: &Value,
    outer_url: &str,
    account_key: &Jwk,
) -> Result<String, ApiError> {
    let member = |name: &str| {
        binding.get(name).and_then(Value::as_str).ok_or_else(|| {
            eab_malformed(format!("must be a flattened JWS with a \"{name}\" string"))
        })
    };
    let (protected_b64, payload_b64, signature_b64) = (
        member("protected")?,
        member("payload")?,
        member("signature")?,
    );
    let decode = |text: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| eab_malformed(format!("{what} is not base64url without padding")))
    };
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(&decode(protected_b64, "the protected header")?)
            .map_err(|_| eab_malformed("the protected header is not a JSON object"))?;
    let text = |name: &str| header.get(name).and_then(Value::as_str);
    let alg = text("alg").unwrap_or_default();
    let Some(digest) = eab_digest(alg) else {
        return Err(eab_malformed(format!(
            "alg must be HS256, HS384 or HS512, not {:?}",
            alg.chars().take(20).collect::<String>()
        )));
    };
    if header.contains_key("nonce") {
        return Err(eab_malformed("the protected header must not have a nonce"));
    }
    if text("url") != Some(outer_url) {
        return Err(eab_malformed(format!(
            "the protected header url must be {outer_url}, the newAccount URL"
        )));
    }
    let key_id = match text("kid") {
        Some(kid) if !kid.is_empty() => kid,
        _ => {
            return Err(eab_malformed(
                "the protected header has no kid (the EAB key id)",
            ));
        }
    };
    let payload: Value = serde_json::from_slice(&decode(payload_b64, "the payload")?)
        .map_err(|_| eab_malformed("the payload must be the account key as a JWK"))?;
    let same_key =
        Jwk::from_value(&payload).is_ok_and(|jwk| jwk.thumbprint() == account_key.thumbprint());
    if !same_key {
        return Err(eab_malformed(
            "the payload must be the account key, the jwk of the newAccount request",
        ));
    }
    let signature = decode(signature_b64, "the signature")?;
    let key = match api.store.eab_key(key_id).await? {
        Some(key) if key.is_usable() => key,
        _ => return Err(eab_key_unusable(key_id)),
    };
    let input = format!("{protected_b64}.{payload_b64}");
    let expected = PKey::hmac(&key.hmac_key)
        .and_then(|pkey| {
            let mut signer = Signer::new(digest, &pkey)?;
            signer.update(input.as_bytes())?;
            signer.sign_to_vec()
        })
        .map_err(|e| ApiError::internal(format!("EAB HMAC: {e}")))?;
    if expected.len() != signature.len() || !openssl::memcmp::eq(&expected, &signature) {
        return Err(ApiError::new(
            ProblemKind::Unauthorized,
            "externalAccountBinding: the HMAC is wrong for this key id",
        ));
    }
    Ok(key_id.to_owned())
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
