//! What relying parties fetch over plain HTTP, on a listener of its own
//! apart from the ACME HTTPS one: the issuing certificate that every leaf's
//! AIA caIssuers URL names (`/ca/intermediate.der`) and the CRL shards their
//! CRL DPs name (`/crl/{issuer}/{shard}.crl`, signed and stored by the
//! signer). The Baseline Requirements (7.1.2.7.7, 7.1.2.11.2) allow only
//! `http://` there: a relying party fetches them before it can check any
//! TLS certificate.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use store::Store;
use tokio_util::sync::CancellationToken;

/// The path of the issuer certificate, under the public base URL: where
/// `signer::certificate::Profile::for_base_url` points every leaf's AIA.
pub const ISSUER_PATH: &str = "/ca/intermediate.der";

/// Serves [`router`] on `listener` until `shutdown`; a failure is logged
/// (the ACME listener carries on without it).
pub async fn serve(listener: tokio::net::TcpListener, store: Store, shutdown: CancellationToken) {
    let stopped = async move { shutdown.cancelled().await };
    if let Err(e) = axum::serve(listener, router(store))
        .with_graceful_shutdown(stopped)
        .await
    {
        tracing::error!(error = %e, "the plain-HTTP listener failed");
    }
}

/// The api binary's listener (`[api] public_http_listen`): bound before it
/// returns, so a taken port stops the start; `None` serves nothing.
pub async fn spawn(
    listen: Option<std::net::SocketAddr>,
    store: Store,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let Some(addr) = listen else {
        return Ok(tokio::spawn(async {}));
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("listening for plain HTTP on {addr}: {e}"))?;
    tracing::info!(listen = %addr, "public plain-HTTP listener (issuer, CRLs)");
    Ok(tokio::spawn(serve(listener, store, shutdown)))
}

pub fn router(store: Store) -> Router {
    Router::new()
        .route(ISSUER_PATH, get(issuer))
        .route(&format!("{}{{issuer}}/{{file}}", store::CRL_PATH), get(crl))
        .with_state(store)
}

/// A shard's current CRL, DER (`application/pkix-crl`, RFC 2585); cached by
/// relying parties and proxies until its nextUpdate at the latest, and for a
/// minute at most, so a revocation shows soon after it is published.
async fn crl(State(store): State<Store>, Path((issuer, file)): Path<(String, String)>) -> Response {
    let name = format!("{issuer}/{file}");
    match store.crl_named(&name).await {
        Ok(Some(crl)) => {
            let until_next = (crl.next_update - store::now_ms()) / 1000;
            let max_age = until_next.clamp(0, 60);
            (
                [
                    (header::CONTENT_TYPE, "application/pkix-crl".to_string()),
                    (header::CACHE_CONTROL, format!("public, max-age={max_age}")),
                ],
                crl.der,
            )
                .into_response()
        }
        Ok(None) => (StatusCode::NOT_FOUND, "no such CRL\n").into_response(),
        Err(e) => unavailable("a CRL", e),
    }
}

fn unavailable(what: &str, e: store::StoreError) -> Response {
    tracing::warn!(error = %e, "reading {what} for the public listener failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        "try again shortly\n",
    )
        .into_response()
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
        Err(e) => unavailable("the issuer", e),
    }
}
