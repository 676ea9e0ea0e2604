//! What every answer shares: the `common_headers` middleware (a fresh
//! nonce, the directory link, `no-store`, and the client-testing hooks'
//! injected faults), the [`Reply`] builder for JSON resources, the
//! `Retry-After` of `processing` resources, and the fallbacks for unknown
//! paths and methods.

use super::Shared;
use crate::Api;
use crate::error::ApiError;
use crate::hooks::{self, Fault};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::ProblemKind;
use serde_json::Value;

/// Adds a fresh `Replay-Nonce` and the directory `Link` to every response
/// (RFC 8555 §6.5, §7.1), errors included, so a client can always retry.
pub async fn common_headers(State(api): Shared, request: Request, next: Next) -> Response {
    let fault = api
        .config
        .client_test_hooks
        .as_ref()
        .and_then(|h| h.fault(hooks::endpoint_of(request.uri().path())));
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

/// The answer to a request that a client-testing hook chose to fail.
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

/// A JSON resource's answer: status, body, and the headers ACME adds.
pub(super) struct Reply {
    status: StatusCode,
    body: Value,
    location: Option<String>,
    links: Vec<String>,
    retry_after: Option<String>,
}

impl Reply {
    pub(super) fn ok(body: Value) -> Self {
        Reply {
            status: StatusCode::OK,
            body,
            location: None,
            links: Vec::new(),
            retry_after: None,
        }
    }
    pub(super) fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
    pub(super) fn location(mut self, url: String) -> Self {
        self.location = Some(url);
        self
    }
    pub(super) fn link(mut self, url: &str, rel: &str) -> Self {
        self.links.push(format!("<{url}>;rel=\"{rel}\""));
        self
    }
    pub(super) fn retry_after(mut self, value: Option<String>) -> Self {
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

/// `Retry-After` for a resource that is (or is not) `processing`.
pub(super) fn processing_retry_after(api: &Api, processing: bool) -> Option<String> {
    if !processing {
        return None;
    }
    let secs = api.latency.retry_after_secs(api.config.retry_after);
    match &api.config.client_test_hooks {
        Some(h) => h.retry_after(secs),
        None => Some(secs.to_string()),
    }
}
