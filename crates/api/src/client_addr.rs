//! The client's address, for the new-accounts-per-address rate limit: the
//! TCP peer, or, behind a TLS-terminating proxy the operator names with
//! `[api] client_address_header`, the last address in that header (the one
//! the proxy itself appended; earlier ones are the client's to invent).

use crate::Api;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// `None` when neither the header nor the peer address is known (a router
/// served without connect info): the per-address limit then does not apply.
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<Arc<Api>> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, Infallible> {
        if let Some(name) = &api.config.client_address_header {
            return Ok(ClientAddr(last_listed(parts, name)));
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(ClientAddr(peer))
    }
}

/// The last address of the last `name` header (`X-Forwarded-For: a, b`).
fn last_listed(parts: &Parts, name: &str) -> Option<IpAddr> {
    let value = parts.headers.get_all(name).iter().next_back()?;
    let last = value.to_str().ok()?.rsplit(',').next()?.trim();
    last.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut req = Request::builder();
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_proxy_appended_address_is_the_last_one() {
        let p = parts(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "198.51.100.1, 192.0.2.4"),
        ]);
        assert_eq!(
            last_listed(&p, "x-forwarded-for"),
            Some("192.0.2.4".parse().unwrap())
        );
        assert_eq!(last_listed(&parts(&[]), "x-forwarded-for"), None);
        let junk = parts(&[("x-forwarded-for", "not-an-address")]);
        assert_eq!(last_listed(&junk, "x-forwarded-for"), None);
    }
}
