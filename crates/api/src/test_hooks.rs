//! Hooks for client authors' testing, set only by the embedded `kiln` when
//! asked for (never by the production `api` binary, whose config has no
//! such keys): rewriting `Retry-After`, and answering a request with an
//! injected fault instead of handling it.

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

pub trait TestHooks: Send + Sync + 'static {
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
