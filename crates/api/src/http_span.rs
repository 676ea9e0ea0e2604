//! One server span per request (OpenTelemetry HTTP semantic conventions
//! v1.27.0: `http.request.method`, `http.route`, `url.path`,
//! `http.response.status_code`; span name `{method} {route}`).
//!
//! The span is always a root: a client's `traceparent` is not continued
//! (ACME clients are not part of Kiln's traces, and an untrusted header
//! must not decide sampling). So the finalize request's span is the root of
//! its order's trace: the CheckCaa job published while handling it carries
//! its context (`queue::Message::new`), and every stage hangs below it.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use tracing::field::Empty;

pub(crate) async fn trace_request(request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let path = request.uri().path().to_string();
    let name = match &route {
        Some(route) => format!("{method} {route}"),
        None => method.clone(),
    };
    let span = tracing::info_span!(
        parent: None,
        "http request",
        otel.name = %name,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = Empty,
        url.path = %path,
        http.response.status_code = Empty,
        user_agent.original = Empty,
        kiln.order.id = Empty,
    );
    if let Some(route) = &route {
        span.record("http.route", route.as_str());
        if let Some(order_id) = order_of(route, &path) {
            span.record("kiln.order.id", order_id);
        }
    }
    if let Some(agent) = request
        .headers()
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        span.record("user_agent.original", agent);
    }
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    response
}

/// The order id of an order or finalize URL.
fn order_of<'a>(route: &str, path: &'a str) -> Option<&'a str> {
    matches!(route, "/acme/order/{id}" | "/acme/finalize/{id}")
        .then(|| path.rsplit('/').next())
        .flatten()
        .filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_come_from_order_routes_only() {
        assert_eq!(
            order_of("/acme/finalize/{id}", "/acme/finalize/ord_1"),
            Some("ord_1")
        );
        assert_eq!(
            order_of("/acme/order/{id}", "/acme/order/ord_2"),
            Some("ord_2")
        );
        assert_eq!(order_of("/acme/authz/{id}", "/acme/authz/az_1"), None);
    }
}
