//! The entry points that need no account: the directory (RFC 8555 §7.1.1),
//! new-nonce (§7.2), and the root certificate at `/roots/0`. The
//! directory also names ARI's `renewalInfo` (RFC 9773 §3) and the
//! certificate profiles newOrder may ask for (draft-ietf-acme-profiles).

use super::Shared;
use super::response::Reply;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::CertificateProfile;
use serde_json::{Map, Value, json};

pub async fn directory(State(api): Shared) -> Response {
    let mut meta = json!({
        "caaIdentities": api.config.caa_identities,
        "externalAccountRequired": api.config.external_account_required,
        "profiles": CertificateProfile::ALL
            .iter()
            .map(|p| (p.name().to_string(), Value::from(p.description())))
            .collect::<Map<String, Value>>(),
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
        // ACME Renewal Information, RFC 9773 §3.
        "renewalInfo": api.url("/acme/renewal-info"),
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

/// `/docs/rate-limits`: the limits in force, where every `rateLimited`
/// answer's `Link: rel="help"` points.
pub async fn rate_limits_page(State(api): Shared) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        api.rate_limiter.limits().help_page(),
    )
        .into_response()
}
