//! The management API of the client-testing knobs (`kiln --mgmt-listen`):
//!
//! - `GET /knobs`: the knobs in force;
//! - `POST /knobs`: change some (JSON, the flags' syntax; absent fields stay);
//! - `DELETE /knobs` or `POST /reset`: back to the start-up knobs;
//! - `GET /orders/{id}`: an order's state and finalization timeline;
//! - `GET /requests`: the requests the ACME api received, oldest first
//!   (`at_ms`, `endpoint`, and the injected `fault` if one answered it):
//!   what a client did, as `kiln conformance` judges it; the log keeps the
//!   latest 10,000, and `dropped` counts the older ones it no longer holds.
//!
//! It has no credentials, so it binds only where it is told (`--mgmt-listen`
//! has no default, and the README shows a loopback address), and it answers
//! only requests meant for itself: the `Host` must name the address the
//! connection arrived on (or `localhost` on it, for a loopback address), so a
//! web page whose name was rebound to 127.0.0.1 (DNS rebinding) gets 421; and
//! a browser's `Origin`, when present, must be this API itself, so a page
//! elsewhere cannot POST knobs (403). A change must be JSON: a cross-site
//! form cannot send `application/json` without a CORS preflight.

use crate::knobs::{KnobState, KnobsDoc};
use axum::Json;
use axum::body::Bytes;
use axum::extract::connect_info::{ConnectInfo, Connected, IntoMakeServiceWithConnectInfo};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use store::Store;

#[derive(Clone)]
struct Mgmt {
    knobs: Arc<KnobState>,
    store: Store,
}

/// The local address each connection arrived on: what a `Host` must name.
#[derive(Clone, Copy, Debug)]
pub struct LocalAddr(Option<SocketAddr>);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for LocalAddr {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        LocalAddr(stream.io().local_addr().ok())
    }
}

/// The management API, to serve with `axum::serve` on a TCP listener (it
/// needs each connection's local address for the `Host` check).
pub fn router(
    knobs: Arc<KnobState>,
    store: Store,
) -> IntoMakeServiceWithConnectInfo<axum::Router, LocalAddr> {
    axum::Router::new()
        .route("/knobs", get(show).post(change).delete(reset))
        .route("/reset", post(reset))
        .route("/orders/{id}", get(order))
        .route("/requests", get(requests))
        .layer(middleware::from_fn(only_for_itself))
        .with_state(Mgmt { knobs, store })
        .into_make_service_with_connect_info::<LocalAddr>()
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// The `host[:port]` authorities this API answers to on `local`.
fn own_authorities(local: SocketAddr) -> Vec<String> {
    let port = local.port();
    let mut own = vec![local.to_string()];
    if local.ip().is_loopback() {
        own.extend([
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ]);
    }
    if port == 80 {
        // Port 80 may be left out of a Host.
        let bare: Vec<String> = own
            .iter()
            .filter_map(|a| a.strip_suffix(":80").map(str::to_string))
            .collect();
        own.extend(bare);
    }
    own
}

/// Why a request is not for this API, if it is not: a foreign `Host` (421)
/// or a foreign `Origin` (403).
fn foreign(
    local: Option<SocketAddr>,
    host: Option<&str>,
    origin: Option<&str>,
) -> Option<(StatusCode, String)> {
    let Some(local) = local else {
        return Some((
            StatusCode::FORBIDDEN,
            "the management API cannot tell which address it was reached on; refused".into(),
        ));
    };
    let own = own_authorities(local);
    let is_own = |authority: &str| own.iter().any(|a| a.eq_ignore_ascii_case(authority));
    match host {
        Some(host) if is_own(host) => {}
        Some(host) => {
            return Some((
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "Host {:?} is not this management API ({}); it answers only requests \
                     addressed to itself",
                    shown(host),
                    own.join(", ")
                ),
            ));
        }
        None => {
            return Some((
                StatusCode::MISDIRECTED_REQUEST,
                format!("a request without a Host is refused; use http://{local}/"),
            ));
        }
    }
    if let Some(origin) = origin {
        let own_origin = origin
            .strip_prefix("http://")
            .is_some_and(|authority| is_own(authority.trim_end_matches('/')));
        if !own_origin {
            return Some((
                StatusCode::FORBIDDEN,
                format!(
                    "Origin {:?} is not this management API; requests from web pages elsewhere \
                     are refused",
                    shown(origin)
                ),
            ));
        }
    }
    None
}

/// Header values are the requester's; keep what is echoed short.
fn shown(s: &str) -> String {
    s.chars().take(80).collect()
}

async fn only_for_itself(
    ConnectInfo(LocalAddr(local)): ConnectInfo<LocalAddr>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    // HTTP/2 carries the authority in the URI instead of a Host header.
    let host = text(header::HOST).or(request.uri().authority().map(|a| a.as_str()));
    if let Some((status, message)) = foreign(local, host, text(header::ORIGIN)) {
        tracing::warn!(host, reason = %message, "management API request refused");
        return refuse(status, message);
    }
    next.run(request).await
}

async fn show(State(m): State<Mgmt>) -> Json<KnobsDoc> {
    Json(m.knobs.get().to_doc())
}

async fn change(State(m): State<Mgmt>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if !content_type.is_some_and(|t| t.eq_ignore_ascii_case("application/json")) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a knobs change is JSON: send Content-Type: application/json".into(),
        );
    }
    // Parsed here rather than by axum's `Json`, so every bad document is a
    // 400 with the reason (a number too large for its field included).
    let doc: KnobsDoc = match serde_json::from_slice(&body) {
        Ok(doc) => doc,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("bad knobs document: {e}")),
    };
    match m.knobs.get().apply(&doc) {
        Ok(knobs) => {
            tracing::info!(knobs = ?knobs.describe(), "knobs changed");
            m.knobs.set(knobs);
            Json(m.knobs.get().to_doc()).into_response()
        }
        Err(e) => refuse(StatusCode::BAD_REQUEST, e),
    }
}

async fn reset(State(m): State<Mgmt>) -> Json<KnobsDoc> {
    m.knobs.reset();
    Json(m.knobs.get().to_doc())
}

async fn requests(State(m): State<Mgmt>) -> Response {
    Json(m.knobs.requests()).into_response()
}

async fn order(State(m): State<Mgmt>, Path(id): Path<String>) -> Response {
    match m.store.order(&id).await {
        Ok(Some(order)) => {
            let t = &order.timeline;
            Json(json!({
                "id": order.id,
                "status": order.status.as_str(),
                "step": order.step.map(|s| s.as_str()),
                "error": order.error,
                "timeline": {
                    "created": order.created_at,
                    "processing": order.processing_since,
                    "caa_checked": t.caa_checked_at,
                    "precertificate": t.precert_at,
                    "scts": t.scts_at,
                    "completed": t.completed_at,
                },
            }))
            .into_response()
        }
        Ok(None) => refuse(StatusCode::NOT_FOUND, format!("no order {}", shown(&id))),
        Err(e) => {
            tracing::error!(order_id = id, error = %e, "management API: reading an order failed");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "reading the order failed; Kiln's log has the details".into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_requests_for_itself_pass() {
        let local: SocketAddr = "127.0.0.1:14001".parse().unwrap();
        let ok = |host, origin| foreign(Some(local), Some(host), origin).is_none();
        assert!(ok("127.0.0.1:14001", None));
        assert!(ok("localhost:14001", None));
        assert!(ok("LOCALHOST:14001", Some("http://localhost:14001")));
        assert!(ok("[::1]:14001", Some("http://127.0.0.1:14001")));
        for (host, origin) in [
            ("evil.example:14001", None),      // DNS rebinding
            ("localhost:14002", None),         // another port
            ("localhost", None),               // port 80
            ("127.0.0.1:14001.evil", None),    // a suffix
            ("127.0.0.1:14001", Some("null")), // sandboxed page
            ("127.0.0.1:14001", Some("http://evil.example")),
            ("127.0.0.1:14001", Some("https://127.0.0.1:14001")),
            ("127.0.0.1:14001", Some("http://localhost:14002")),
        ] {
            assert!(!ok(host, origin), "{host} {origin:?}");
        }
        let (status, why) = foreign(Some(local), Some("evil.example:14001"), None).unwrap();
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
        assert!(
            why.contains("evil.example") && why.contains("127.0.0.1:14001"),
            "{why}"
        );
        let (status, _) = foreign(Some(local), Some("localhost:14001"), Some("http://x")).unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(foreign(Some(local), None, None).is_some(), "no Host");
        assert!(
            foreign(None, Some("localhost:14001"), None).is_some(),
            "no local address"
        );
        // Bound to every address (explicitly): the address it was reached on.
        let lan: SocketAddr = "192.0.2.7:14001".parse().unwrap();
        assert!(foreign(Some(lan), Some("192.0.2.7:14001"), None).is_none());
        assert!(foreign(Some(lan), Some("localhost:14001"), None).is_some());
        let web: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert!(foreign(Some(web), Some("localhost"), None).is_none());
    }
}
