//! The ACME endpoints, one module per resource, and what they share:
//! request authentication (`auth`) and the common response parts
//! (`response`). `lib.rs` routes paths to the functions re-exported here.

mod account;
mod auth;
mod authz;
mod certificate;
mod directory;
mod finalize;
mod order;
mod renewal_info;
mod response;

pub use account::{account, account_orders, key_change, new_account};
pub use authz::{authz, challenge};
pub use certificate::{certificate, revoke_cert};
pub use directory::{directory, new_nonce_get, new_nonce_head, rate_limits_page, root};
pub use finalize::finalize;
pub use order::{new_order, order};
pub use renewal_info::renewal_info;
pub use response::{common_headers, method_not_allowed, not_found};

use crate::Api;
use crate::error::ApiError;
use axum::extract::State;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::sync::Arc;

type Shared = State<Arc<Api>>;
type ApiResult = Result<Response, ApiError>;

/// An unguessable resource id of `bytes` random bytes, base64url.
fn random_id(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    openssl::rand::rand_bytes(&mut raw).expect("CSPRNG");
    URL_SAFE_NO_PAD.encode(raw)
}
