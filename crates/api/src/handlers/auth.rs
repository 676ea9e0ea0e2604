//! Request authentication: the extractors every endpoint takes (the path's
//! resource id, the buffered body), and [`authenticate`], which checks a
//! request's JWS, nonce, URL and signature and finds the account behind a
//! `kid`; plus the one answer for a resource of another account.

use crate::error::ApiError;
use crate::jws::{self, Jwk, KeyRef};
use crate::nonce::{Redemption, replayed};
use crate::{Api, request_limits};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use domain::{AccountStatus, ProblemKind};
use std::sync::Arc;
use store::Account;

/// Axum's own rejection (e.g. invalid UTF-8 in a path parameter, a body
/// over the size limit) as a problem document, like every client error.
fn rejection(status: StatusCode, text: String) -> ApiError {
    ApiError::new(ProblemKind::Malformed, text).with_status(status)
}

/// The resource id in the path.
pub(crate) struct PathId(pub(super) String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(PathId(id)),
            Err(e) => Err(rejection(e.status(), e.body_text())),
        }
    }
}

/// The request body, buffered.
pub(crate) struct Body(pub(super) Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let read = Bytes::from_request(request, state);
        match tokio::time::timeout(request_limits::BODY_READ_TIMEOUT, read).await {
            Ok(Ok(bytes)) => Ok(Body(bytes)),
            Ok(Err(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(rejection(
                e.status(),
                format!(
                    "the request body is over {} KiB",
                    request_limits::MAX_BODY_BYTES / 1024
                ),
            )),
            Ok(Err(e)) => Err(rejection(e.status(), e.body_text())),
            Err(_) => Err(rejection(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    request_limits::BODY_READ_TIMEOUT.as_secs()
                ),
            )),
        }
    }
}

/// How a request must name the key it is signed with (RFC 8555 §6.2).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyRule {
    /// newAccount: the key itself, in `jwk`.
    Jwk,
    /// Everything an account does: its URL, in `kid`.
    Kid,
    /// revokeCert: either the account or the certificate's key.
    Either,
}

/// A request whose JWS, nonce, URL and signature have all been checked.
pub(super) struct Authenticated {
    pub(super) payload: Vec<u8>,
    pub(super) post_as_get: bool,
    /// The request's `url`, already checked against where it was sent.
    pub(super) url: String,
    pub(super) key: Arc<Jwk>,
    /// Set for `kid` requests: the valid account that signed (verified).
    pub(super) account: Option<Account>,
}

impl Authenticated {
    pub(super) fn account(&self) -> &Account {
        self.account
            .as_ref()
            .expect("kid requests carry an account")
    }

    /// The payload as JSON; POST-as-GET reads as `{}`.
    pub(super) fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        let text: &[u8] = if self.post_as_get {
            b"{}"
        } else {
            &self.payload
        };
        serde_json::from_slice(text)
            .map_err(|e| ApiError::new(ProblemKind::Malformed, format!("payload: {e}")))
    }

    pub(super) fn require_post_as_get(&self) -> Result<(), ApiError> {
        if self.post_as_get {
            Ok(())
        } else {
            Err(ApiError::new(
                ProblemKind::Malformed,
                "this resource is read with POST-as-GET: the payload must be empty",
            ))
        }
    }
}

pub(super) async fn authenticate(
    api: &Api,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
    rule: KeyRule,
) -> Result<Authenticated, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.split(';').next().map(str::trim) != Some("application/jose+json") {
        return Err(ApiError::new(
            ProblemKind::Malformed,
            "Content-Type must be application/jose+json",
        )
        .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }
    let parsed = jws::parse(body)?;
    // §6.4: the URL the request was sent to, query included (orders pages).
    let url = api.url(uri.path_and_query().map_or(uri.path(), |pq| pq.as_str()));
    parsed.protected.check_url(&url)?;
    let nonce = &parsed.protected.nonce;
    let redemption = api.nonces.check(nonce)?;
    // A kid request redeems a shared nonce together with its account read
    // (one round trip); any other redeems it here, before the checks below,
    // as a sole replica's `check` has already done.
    let kid_account_id = match (&parsed.protected.key, rule) {
        (KeyRef::Kid(kid), KeyRule::Kid | KeyRule::Either) => account_id_in(api, kid),
        _ => None,
    };
    let redemption = match kid_account_id {
        Some(_) => redemption,
        None => {
            if let Redemption::InStore { expires_at } = redemption
                && !api.store.consume_nonce(nonce, expires_at).await?
            {
                return Err(replayed().into());
            }
            Redemption::Done
        }
    };
    let (key, account) = match (&parsed.protected.key, rule) {
        (KeyRef::Jwk(_), KeyRule::Kid) => {
            return Err(ApiError::new(
                ProblemKind::Malformed,
                "this request must name its account with kid, not jwk",
            ));
        }
        (KeyRef::Kid(_), KeyRule::Jwk) => {
            return Err(ApiError::new(
                ProblemKind::Malformed,
                "this request must carry its key as jwk, not kid",
            ));
        }
        (KeyRef::Jwk(jwk), _) => (Arc::new(jwk.clone()), None),
        (KeyRef::Kid(_), _) => {
            let Some(id) = kid_account_id else {
                return Err(ApiError::new(
                    ProblemKind::Malformed,
                    format!(
                        "kid must be an account URL of this server ({}…)",
                        api.url("/acme/acct/")
                    ),
                ));
            };
            let account = account_for_id(api, id, nonce, redemption).await?;
            let key = api
                .account_keys
                .key_of(&account)
                .map_err(|p| ApiError::internal(p.detail))?;
            (key, Some(account))
        }
    };
    // The signature is checked before anything else is said about the
    // account. A `jwk` request names no account here at all: newAccount and
    // revokeCert look the key up only after this. A `kid` request needs the
    // account's key to be verified, so an unknown account is answered
    // `accountDoesNotExist` before any signature check (there is nothing to
    // check it with; RFC 8555 §6.7 gives that type, and clients rely on it
    // to recover). That says only whether an account URL exists, and account
    // URLs are unguessable. Everything else waits for a valid signature:
    // a deactivated or revoked account answers `unauthorized` (§7.3.6) only
    // to its key's holder; anyone else gets "signature is invalid", as for
    // a valid account.
    let payload = jws::verify(&parsed, &key)?;
    if let Some(account) = &account
        && account.status != AccountStatus::Valid
    {
        return Err(ApiError::new(
            ProblemKind::Unauthorized,
            format!("account is {}", account.status),
        ));
    }
    Ok(Authenticated {
        payload,
        post_as_get: parsed.is_post_as_get(),
        url,
        key,
        account,
    })
}

/// The account id in a `kid` of this server (`{base}/acme/acct/{id}`).
fn account_id_in<'k>(api: &Api, kid: &'k str) -> Option<&'k str> {
    kid.strip_prefix(&api.url("/acme/acct/"))
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// The account `id`, whatever its status (checked after the signature),
/// redeeming the request's nonce on the way (one database round trip for
/// both where the nonce is shared).
async fn account_for_id(
    api: &Api,
    id: &str,
    nonce: &str,
    redemption: Redemption,
) -> Result<Account, ApiError> {
    let account = match redemption {
        Redemption::Done => api.accounts.account(&api.store, id).await?,
        Redemption::InStore { expires_at } => {
            let (fresh, account) = api
                .store
                .consume_nonce_reading_account(nonce, expires_at, id)
                .await?;
            if !fresh {
                return Err(replayed().into());
            }
            account
        }
    };
    account
        .ok_or_else(|| ApiError::new(ProblemKind::AccountDoesNotExist, "no account for this kid"))
}

pub(super) fn not_yours(what: &str) -> ApiError {
    ApiError::new(
        ProblemKind::Unauthorized,
        format!("this {what} belongs to another account"),
    )
}
