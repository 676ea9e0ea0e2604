//! Bounds on what one client can make the api hold: a request body's size,
//! how long the body may take to arrive (a client that sends headers and
//! then trickles, or nothing, would otherwise hold its request forever), and
//! how many requests are in flight at once — beyond that the api answers
//! 503 with `Retry-After` at once, shedding an overload instead of queuing
//! it without bound.

use crate::Api;
use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::ProblemKind;
use std::sync::Arc;
use std::time::Duration;

/// The largest request body accepted: an ACME body is a JWS of a few KiB
/// at most (a finalize with an 8192-bit RSA CSR is under 4 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long a request body may take to arrive once the headers have.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests in flight at once, by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// Middleware: a permit per request while it runs; none left is a 503.
pub(crate) async fn limit_in_flight(
    State(api): State<Arc<Api>>,
    request: Request,
    next: Next,
) -> Response {
    match api.in_flight.clone().try_acquire_owned() {
        Ok(permit) => {
            let response = next.run(request).await;
            drop(permit);
            response
        }
        Err(_) => ApiError::new(
            ProblemKind::ServerInternal,
            "the server is busy; retry after the Retry-After delay",
        )
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
        .with_retry_after(1)
        .into_response(),
    }
}
