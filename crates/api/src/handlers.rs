//! One function per ACME endpoint, plus request authentication.

use crate::error::ApiError;
use crate::jws::{self, Jwk, KeyRef};
use crate::nonce::ApiNonceError;
use crate::test_hooks::{self, Fault};
use crate::{Api, FinalizeMode, compat, csr};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::{
    AccountStatus, AuthzStatus, ChallengeStatus, Identifier, OrderStatus, Problem, ProblemKind,
};
use proto::Job;
use queue::Message;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use store::{Account, Authz, Challenge, Order, now_ms};
use tokio::sync::broadcast;

type Shared = State<Arc<Api>>;
type ApiResult = Result<Response, ApiError>;

/// Most identifiers one order may name (Let's Encrypt allows 100).
const MAX_IDENTIFIERS: usize = 100;
/// Orders listed per page of an account's orders URL.
const ORDERS_PAGE: i64 = 100;

// ---- responses ---------------------------------------------------------------

/// Adds a fresh `Replay-Nonce` and the directory `Link` to every response
/// (RFC 8555 §6.5, §7.1), errors included, so a client can always retry.
pub async fn common_headers(State(api): Shared, request: Request, next: Next) -> Response {
    let fault = api
        .config
        .test_hooks
        .as_ref()
        .and_then(|hooks| hooks.fault(test_hooks::endpoint_of(request.uri().path())));
    let mut response = match fault {
        None => next.run(request).await,
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        Some(fault) => injected_fault(fault),
    };
    let headers = response.headers_mut();
    if let Ok(nonce) = HeaderValue::from_str(&api.nonces.issue()) {
        headers.insert("replay-nonce", nonce);
    }
    if let Ok(link) = HeaderValue::from_str(&format!("<{}>;rel=\"index\"", api.url("/directory"))) {
        headers.append(header::LINK, link);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The answer to a request that a test hook chose to fail.
fn injected_fault(fault: Fault) -> Response {
    let (kind, detail, status, retry_after) = match fault {
        Fault::BadNonce => (
            ProblemKind::BadNonce,
            "injected fault: bad nonce; retry with the fresh one",
            None,
            None,
        ),
        Fault::RateLimited { retry_after_secs } => (
            ProblemKind::RateLimited,
            "injected fault: rate limited; retry after the Retry-After delay",
            None,
            Some(retry_after_secs),
        ),
        Fault::Unavailable => (
            ProblemKind::ServerInternal,
            "injected fault: service unavailable; retry shortly",
            Some(StatusCode::SERVICE_UNAVAILABLE),
            Some(1),
        ),
        Fault::Internal | Fault::Slow(_) => (
            ProblemKind::ServerInternal,
            "injected fault: internal error",
            None,
            None,
        ),
    };
    let mut error = ApiError::new(kind, detail);
    error.status = status;
    let mut response = error.into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

struct Reply {
    status: StatusCode,
    body: Value,
    location: Option<String>,
    links: Vec<String>,
    retry_after: Option<String>,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Reply {
            status: StatusCode::OK,
            body,
            location: None,
            links: Vec::new(),
            retry_after: None,
        }
    }
    fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
    fn location(mut self, url: String) -> Self {
        self.location = Some(url);
        self
    }
    fn link(mut self, url: &str, rel: &str) -> Self {
        self.links.push(format!("<{url}>;rel=\"{rel}\""));
        self
    }
    fn retry_after(mut self, value: Option<String>) -> Self {
        self.retry_after = value;
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(v) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(header::LOCATION, v);
        }
        for link in self.links {
            if let Ok(v) = HeaderValue::from_str(&link) {
                headers.append(header::LINK, v);
            }
        }
        if let Some(v) = self
            .retry_after
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            headers.insert(header::RETRY_AFTER, v);
        }
        response
    }
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("resource")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ProblemKind::Malformed,
        "method not allowed; ACME resources take POST (POST-as-GET to read)",
    )
    .with_status(StatusCode::METHOD_NOT_ALLOWED)
}

// ---- extractors -------------------------------------------------------------

/// Axum's own rejection (e.g. invalid UTF-8 in a path parameter, a body
/// over the size limit) as a problem document, like every client error.
fn rejection(status: StatusCode, text: String) -> ApiError {
    ApiError::new(ProblemKind::Malformed, text).with_status(status)
}

/// The resource id in the path.
pub struct PathId(String);

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
pub struct Body(Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(Body(bytes)),
            Err(e) => Err(rejection(e.status(), e.body_text())),
        }
    }
}

// ---- authentication ----------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyRule {
    /// newAccount: the key itself, in `jwk`.
    Jwk,
    /// Everything an account does: its URL, in `kid`.
    Kid,
    /// revokeCert: either the account or the certificate's key.
    Either,
}

/// A request whose JWS, nonce, URL and signature have all been checked.
struct Authenticated {
    payload: Vec<u8>,
    post_as_get: bool,
    /// The request's `url`, already checked against where it was sent.
    url: String,
    key: Jwk,
    /// Set for `kid` requests: the valid account that signed.
    account: Option<Account>,
}

impl Authenticated {
    fn account(&self) -> &Account {
        self.account
            .as_ref()
            .expect("kid requests carry an account")
    }

    /// The payload as JSON; POST-as-GET reads as `{}`.
    fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        let text: &[u8] = if self.post_as_get {
            b"{}"
        } else {
            &self.payload
        };
        serde_json::from_slice(text)
            .map_err(|e| ApiError::new(ProblemKind::Malformed, format!("payload: {e}")))
    }

    fn require_post_as_get(&self) -> Result<(), ApiError> {
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

async fn authenticate(
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
    match api
        .nonces
        .consume(&api.store, &parsed.protected.nonce)
        .await
    {
        Ok(()) => {}
        Err(ApiNonceError::Bad(p)) => return Err(p.into()),
        Err(ApiNonceError::Store(e)) => return Err(e.into()),
    }
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
        (KeyRef::Jwk(jwk), _) => (jwk.clone(), None),
        (KeyRef::Kid(kid), _) => {
            let account = account_for_kid(api, kid).await?;
            let key = Jwk::from_json(&account.jwk).map_err(|p| ApiError::internal(p.detail))?;
            (key, Some(account))
        }
    };
    let payload = jws::verify(&parsed, &key)?;
    Ok(Authenticated {
        payload,
        post_as_get: parsed.is_post_as_get(),
        url,
        key,
        account,
    })
}

async fn account_for_kid(api: &Api, kid: &str) -> Result<Account, ApiError> {
    let prefix = api.url("/acme/acct/");
    let id = kid
        .strip_prefix(&prefix)
        .filter(|id| !id.is_empty() && !id.contains('/'));
    let Some(id) = id else {
        return Err(ApiError::new(
            ProblemKind::Malformed,
            format!("kid must be an account URL of this server ({prefix}…)"),
        ));
    };
    let Some(account) = api.store.account(id).await? else {
        return Err(ApiError::new(
            ProblemKind::AccountDoesNotExist,
            "no account for this kid",
        ));
    };
    if account.status != AccountStatus::Valid {
        return Err(ApiError::new(
            ProblemKind::Unauthorized,
            format!("account is {}", account.status),
        ));
    }
    Ok(account)
}

fn not_yours(what: &str) -> ApiError {
    ApiError::new(
        ProblemKind::Unauthorized,
        format!("this {what} belongs to another account"),
    )
}

fn random_id(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    openssl::rand::rand_bytes(&mut raw).expect("CSPRNG");
    URL_SAFE_NO_PAD.encode(raw)
}

/// `Retry-After` for a resource that is (or is not) `processing`.
fn processing_retry_after(api: &Api, processing: bool) -> Option<String> {
    if !processing {
        return None;
    }
    let secs = api.latency.retry_after_secs(api.config.retry_after);
    match &api.config.test_hooks {
        Some(hooks) => hooks.retry_after(secs),
        None => Some(secs.to_string()),
    }
}

// ---- directory and nonces ----------------------------------------------------

pub async fn directory(State(api): Shared) -> Response {
    let mut meta = json!({
        "caaIdentities": api.config.caa_identities,
        "externalAccountRequired": false,
    });
    if let Some(tos) = &api.config.terms_of_service {
        meta["termsOfService"] = json!(tos);
    }
    Reply::ok(json!({
        "newNonce": api.url("/acme/new-nonce"),
        "newAccount": api.url("/acme/new-account"),
        "newOrder": api.url("/acme/new-order"),
        "revokeCert": api.url("/acme/revoke-cert"),
        "keyChange": api.url("/acme/key-change"),
        "meta": meta,
    }))
    .into_response()
}

pub async fn new_nonce_head() -> StatusCode {
    StatusCode::OK
}

pub async fn new_nonce_get() -> StatusCode {
    StatusCode::NO_CONTENT
}

pub async fn root(State(api): Shared) -> Response {
    match &api.config.root_pem {
        Some(pem) => (
            [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
            pem.clone(),
        )
            .into_response(),
        None => ApiError::not_found("root").into_response(),
    }
}

// ---- accounts ----------------------------------------------------------------

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
            api.store.deactivate_account(&id).await?;
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
        api.store.update_account_contact(&id, &contact).await?;
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
    match api
        .store
        .change_account_key(
            &account.id,
            &account.key_thumbprint,
            &new_key.thumbprint(),
            &new_key.to_json(),
        )
        .await
    {
        Ok(true) => {}
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

// ---- orders ------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewOrderPayload {
    identifiers: Vec<IdentifierIn>,
    #[serde(default)]
    not_before: Option<String>,
    #[serde(default)]
    not_after: Option<String>,
}

#[derive(Deserialize)]
struct IdentifierIn {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

pub async fn new_order(
    State(api): Shared,
    headers: HeaderMap,
    uri: Uri,
    Body(body): Body,
) -> ApiResult {
    let req = authenticate(&api, &headers, &uri, &body, KeyRule::Kid).await?;
    let payload: NewOrderPayload = req.json()?;
    if payload.not_before.is_some() || payload.not_after.is_some() {
        return Err(ApiError::new(
            ProblemKind::Malformed,
            "notBefore and notAfter are not supported; omit them",
        ));
    }
    if payload.identifiers.is_empty() {
        return Err(ApiError::new(
            ProblemKind::Malformed,
            "an order needs at least one identifier",
        ));
    }
    if payload.identifiers.len() > MAX_IDENTIFIERS {
        return Err(ApiError::new(
            ProblemKind::RejectedIdentifier,
            format!("an order may name at most {MAX_IDENTIFIERS} identifiers"),
        ));
    }
    let mut names = BTreeSet::new();
    let mut rejected = Vec::new();
    for id in &payload.identifiers {
        if id.kind != "dns" {
            return Err(ApiError::new(
                ProblemKind::UnsupportedIdentifier,
                format!(
                    "identifier type {:?} is not supported; only \"dns\"",
                    id.kind
                ),
            ));
        }
        match domain::normalize_dns_identifier(&id.value) {
            Ok(name) => {
                names.insert(name);
            }
            Err(p) => rejected.push(p.for_identifier(Identifier::dns(id.value.clone()))),
        }
    }
    if !rejected.is_empty() {
        let detail = format!("{} identifier(s) cannot be issued for", rejected.len());
        return Err(Problem::new(ProblemKind::RejectedIdentifier, detail)
            .with_subproblems(rejected)
            .into());
    }
    let account = req.account();
    let now = now_ms();
    let order = Order {
        id: random_id(16),
        account_id: account.id.clone(),
        status: OrderStatus::Pending,
        step: None,
        identifiers: names.iter().map(|n| Identifier::dns(n.clone())).collect(),
        not_before: None,
        not_after: None,
        expires_at: now + api.config.order_lifetime.as_millis() as i64,
        created_at: now,
        csr: None,
        processing_since: None,
        step_deadline: None,
        finalize_deadline: None,
        error: None,
        certificate_serial: None,
        timeline: Default::default(),
    };
    let mut authzs = Vec::new();
    for identifier in &order.identifiers {
        let authz = Authz {
            id: random_id(16),
            order_id: order.id.clone(),
            account_id: account.id.clone(),
            identifier: identifier.authz_name().to_string(),
            wildcard: identifier.is_wildcard(),
            status: AuthzStatus::Pending,
            expires_at: now + api.config.authz_lifetime.as_millis() as i64,
            validated_at: None,
        };
        let challenges = domain::challenge_types_for(identifier)
            .iter()
            .map(|kind| Challenge {
                id: random_id(16),
                authz_id: authz.id.clone(),
                kind: *kind,
                token: random_id(32),
                status: ChallengeStatus::Pending,
                validated_at: None,
                error: None,
            })
            .collect();
        authzs.push((authz, challenges));
    }
    api.store.insert_order(&order, &authzs).await?;
    let authzs: Vec<Authz> = authzs.into_iter().map(|(a, _)| a).collect();
    Ok(Reply::ok(api.order_json(&order, &authzs))
        .status(StatusCode::CREATED)
        .location(api.order_url(&order.id))
        .into_response())
}

/// The order, if the account owns it.
async fn owned_order(
    api: &Api,
    id: &str,
    account: &Account,
) -> Result<(Order, Vec<Authz>), ApiError> {
    let order = api
        .store
        .order(id)
        .await?
        .ok_or_else(|| ApiError::not_found("order"))?;
    if order.account_id != account.id {
        return Err(not_yours("order"));
    }
    let authzs = api.store.authzs_for_order(id).await?;
    Ok((order, authzs))
}

fn order_reply(api: &Api, order: &Order, authzs: &[Authz]) -> Reply {
    let processing = api.order_status(order, authzs) == OrderStatus::Processing;
    Reply::ok(api.order_json(order, authzs))
        .location(api.order_url(&order.id))
        .retry_after(processing_retry_after(api, processing))
}

pub async fn order(
    State(api): Shared,
    PathId(id): PathId,
    headers: HeaderMap,
    uri: Uri,
    Body(body): Body,
) -> ApiResult {
    let req = authenticate(&api, &headers, &uri, &body, KeyRule::Kid).await?;
    req.require_post_as_get()?;
    let (order, authzs) = owned_order(&api, &id, req.account()).await?;
    if order.processing_since.is_some() {
        // Did the client come back after finalize? (compatibility report)
        if let Err(e) = api.store.observe_poll(&id, now_ms()).await {
            tracing::warn!(order_id = %id, error = %e, "recording a poll failed");
        }
    }
    Ok(order_reply(&api, &order, &authzs).into_response())
}

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
    let payload: FinalizePayload = req.json()?;
    let names: Vec<String> = order.identifiers.iter().map(|i| i.value.clone()).collect();
    csr::check_csr(&payload.csr, &names, req.key.public_key_spki_der())?;
    let csr_der = URL_SAFE_NO_PAD
        .decode(&payload.csr)
        .map_err(|_| ApiError::new(ProblemKind::BadCsr, "csr is not base64url"))?;
    let now = now_ms();
    let step_deadline = now + api.config.step_timeout.as_millis() as i64;
    let finalize_deadline = now + api.config.finalize_timeout.as_millis() as i64;
    if !api
        .store
        .begin_finalize(
            &id,
            &csr_der,
            now,
            step_deadline,
            finalize_deadline,
            // This request's trace id (its span is the root of the order's
            // trace), shown by `kiln order show`.
            queue::trace::current_trace_id().as_deref(),
        )
        .await?
    {
        // Someone else moved it first (a concurrent finalize).
        return Err(ApiError::new(
            ProblemKind::OrderNotReady,
            "order is already being finalized",
        ));
    }
    let policy = api.config.finalize.get();
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mode = policy.mode_for(time::OffsetDateTime::now_utc(), &account.id, user_agent);
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
    if order.status == OrderStatus::Processing {
        let (client_product, client_version) = compat::client_of(user_agent);
        let observation = store::FinalizeObservation {
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
        };
        if let Err(e) = api.store.record_finalize_observation(&observation).await {
            tracing::warn!(order_id = %id, error = %e, "recording the compatibility observation failed");
        }
    }
    Ok(order_reply(&api, &order, &authzs).into_response())
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

// ---- authorizations and challenges --------------------------------------------

async fn owned_authz(api: &Api, id: &str, account: &Account) -> Result<Authz, ApiError> {
    let authz = api
        .store
        .authz(id)
        .await?
        .ok_or_else(|| ApiError::not_found("authorization"))?;
    if authz.account_id != account.id {
        return Err(not_yours("authorization"));
    }
    Ok(authz)
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
    let mut authz = owned_authz(&api, &id, req.account()).await?;
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
            authz = owned_authz(&api, &id, req.account()).await?;
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
    let challenges = api.store.challenges_for_authz(&id).await?;
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
    let challenge = api
        .store
        .challenge(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("challenge"))?;
    let authz = owned_authz(&api, &challenge.authz_id, req.account()).await?;
    let up = api.authz_url(&authz.id);
    if req.post_as_get {
        let processing = challenge.status == ChallengeStatus::Processing;
        return Ok(Reply::ok(api.challenge_json(&challenge))
            .link(&up, "up")
            .retry_after(processing_retry_after(&api, processing))
            .into_response());
    }
    // Any JSON object means "ready to be validated" (RFC 8555 §7.5.1).
    let _: serde_json::Map<String, Value> = req.json()?;
    let now = now_ms();
    if challenge.status == ChallengeStatus::Pending {
        let deadline = now + api.config.challenge_timeout.as_millis() as i64;
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
        } else if authz.status != AuthzStatus::Pending {
            return Err(ApiError::new(
                ProblemKind::Malformed,
                format!(
                    "the authorization is {}; its challenges can no longer be attempted",
                    authz.status
                ),
            ));
        }
    }
    let challenge = api
        .store
        .challenge(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("challenge"))?;
    let processing = challenge.status == ChallengeStatus::Processing;
    Ok(Reply::ok(api.challenge_json(&challenge))
        .link(&up, "up")
        .retry_after(processing_retry_after(&api, processing))
        .into_response())
}

// ---- certificates ------------------------------------------------------------

pub async fn certificate(
    State(api): Shared,
    PathId(serial): PathId,
    headers: HeaderMap,
    uri: Uri,
    Body(body): Body,
) -> ApiResult {
    let req = authenticate(&api, &headers, &uri, &body, KeyRule::Kid).await?;
    req.require_post_as_get()?;
    let cert = api
        .store
        .certificate(&serial)
        .await?
        .ok_or_else(|| ApiError::not_found("certificate"))?;
    if cert.account_id != req.account().id {
        return Err(not_yours("certificate"));
    }
    let (Some(der), store::CertificateState::Issued) = (&cert.final_der, cert.state) else {
        return Err(ApiError::not_found("certificate"));
    };
    if let Err(e) = api.store.observe_download(&cert.order_id, now_ms()).await {
        tracing::warn!(order_id = %cert.order_id, error = %e, "recording a download failed");
    }
    let leaf = openssl::x509::X509::from_der(der).map_err(ApiError::internal)?;
    let mut pem = String::from_utf8(leaf.to_pem().map_err(ApiError::internal)?)
        .map_err(ApiError::internal)?;
    pem.push_str(&api_chain_pem(&api));
    Ok((
        [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
        pem,
    )
        .into_response())
}

/// The intermediate that follows every leaf. The api learns it from the
/// stored CA chain, which the signer writes at start-up.
fn api_chain_pem(api: &Api) -> String {
    api.config.chain_pem.clone().unwrap_or_default()
}

#[derive(Deserialize)]
struct RevokePayload {
    certificate: String,
    #[serde(default)]
    reason: Option<i64>,
}

/// RFC 5280 reasons a subscriber may give (CA/B Forum BR §7.2.2 keeps 0, 1,
/// 3, 4, 5); the others are the CA's own or meaningless for a leaf.
const ALLOWED_REASONS: &[i64] = &[0, 1, 3, 4, 5];

pub async fn revoke_cert(
    State(api): Shared,
    headers: HeaderMap,
    uri: Uri,
    Body(body): Body,
) -> ApiResult {
    let req = authenticate(&api, &headers, &uri, &body, KeyRule::Either).await?;
    let payload: RevokePayload = req.json()?;
    let reason = payload.reason.unwrap_or(0);
    if !ALLOWED_REASONS.contains(&reason) {
        return Err(ApiError::new(
            ProblemKind::BadRevocationReason,
            format!("reason {reason} is not allowed; use one of {ALLOWED_REASONS:?}"),
        ));
    }
    let der = URL_SAFE_NO_PAD
        .decode(&payload.certificate)
        .map_err(|_| ApiError::new(ProblemKind::Malformed, "certificate is not base64url"))?;
    let x509 = openssl::x509::X509::from_der(&der).map_err(|_| {
        ApiError::new(
            ProblemKind::Malformed,
            "certificate is not a DER certificate",
        )
    })?;
    let serial = hex::encode(
        x509.serial_number()
            .to_bn()
            .map_err(ApiError::internal)?
            .to_vec(),
    );
    let cert = api.store.certificate(&serial).await?;
    let cert = match cert {
        Some(c) if c.final_der.as_deref() == Some(der.as_slice()) => c,
        _ => return Err(ApiError::not_found("certificate issued by this CA")),
    };
    match &req.account {
        Some(account) if account.id != cert.account_id => return Err(not_yours("certificate")),
        Some(_) => {}
        None => {
            // Compared as keys, not SPKI bytes: one EC key has two encodings.
            let cert_key = x509.public_key().map_err(ApiError::internal)?;
            if !cert_key.public_eq(req.key.public_key()) {
                return Err(ApiError::new(
                    ProblemKind::Unauthorized,
                    "the jwk is neither an account key nor the certificate's key",
                ));
            }
        }
    }
    if !api
        .store
        .revoke_certificate(&serial, reason, now_ms())
        .await?
    {
        return Err(ApiError::new(
            ProblemKind::AlreadyRevoked,
            "certificate is already revoked",
        ));
    }
    tracing::info!(serial = %serial, reason, "certificate revoked");
    Ok(StatusCode::OK.into_response())
}
