//! The seam through which the all-in-one `kiln`'s client-testing knobs
//! (`crates/kiln/src/knobs`) reach the api: rewriting `Retry-After` on
//! `processing` resources, and answering a request with an injected fault
//! instead of handling it.
//!
//! Only the all-in-one sets [`crate::ApiConfig::client_test_hooks`],
//! and only when asked for; the production `api` binary never does (its
//! config has no such keys), so in production the field is `None` and none
//! of this runs. It is a trait because the knobs live in `kiln`, next to the
//! pipeline decorators and the management API that share them, and the api
//! must not depend on `kiln`: the api owns the seam, `kiln` implements it.
//! Keep it this small: each method is a place where test behaviour can
//! enter a request.

use std::time::Duration;

/// A fault to answer a request with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 400 `badNonce`: the client must retry with the fresh nonce.
    BadNonce,
    /// 429 `rateLimited` with this `Retry-After`.
    RateLimited { retry_after_secs: u64 },
    /// 503 with `Retry-After: 1`.
    Unavailable,
    /// 500 `serverInternal`.
    Internal,
    /// Handle the request normally, after this long.
    Slow(Duration),
}

/// What the client-testing knobs may change in a request.
pub trait ClientTestHooks: Send + Sync + 'static {
    /// The `Retry-After` value for a `processing` resource, given the one
    /// Kiln computed; `None` leaves the header out.
    fn retry_after(&self, computed_secs: u64) -> Option<String>;

    /// A fault for this request to `endpoint` (`new-order`, `finalize`,
    /// `order`, … — the path's first segment after `/acme/`, or
    /// `directory`), if one is due.
    fn fault(&self, endpoint: &str) -> Option<Fault>;
}

/// The endpoint name a path belongs to.
pub fn endpoint_of(path: &str) -> &str {
    match path.strip_prefix("/acme/") {
        Some(rest) => rest.split('/').next().unwrap_or(rest),
        None => path.trim_start_matches('/').split('/').next().unwrap_or(""),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn endpoints_are_named_by_their_first_segment() {
        use super::endpoint_of;
        assert_eq!(endpoint_of("/acme/new-order"), "new-order");
        assert_eq!(endpoint_of("/acme/order/abc"), "order");
        assert_eq!(endpoint_of("/acme/chall/x"), "chall");
        assert_eq!(endpoint_of("/directory"), "directory");
    }
}
