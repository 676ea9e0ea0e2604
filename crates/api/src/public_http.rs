//! What relying parties fetch over plain HTTP, on a listener of its own
//! apart from the ACME HTTPS one: the issuing certificate that every leaf's
//! AIA caIssuers URL names (`/ca/intermediate.der`). The Baseline
//! Requirements (7.1.2.7.7) allow only `http://` there: a relying party
//! fetches it before it can check any TLS certificate.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use store::Store;

/// The path of the issuer certificate, under the public base URL: where
/// `signer::certificate::Profile::for_base_url` points every leaf's AIA.
pub const ISSUER_PATH: &str = "/ca/intermediate.der";

pub fn router(store: Store) -> Router {
    Router::new()
        .route(ISSUER_PATH, get(issuer))
        .with_state(store)
}

/// The issuing certificate the signer recorded last, DER
/// (`application/pkix-cert`, RFC 2585).
async fn issuer(State(store): State<Store>) -> Response {
    match store.issuer(None).await {
        Ok(Some(issuer)) => (
            [(header::CONTENT_TYPE, "application/pkix-cert")],
            issuer.certificate_der.clone(),
        )
            .into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no issuer is recorded yet\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "reading the issuer for the public listener failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                "try again shortly\n",
            )
                .into_response()
        }
    }
}
