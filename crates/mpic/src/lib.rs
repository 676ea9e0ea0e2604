//! Multi-Perspective Issuance Corroboration (BR 3.2.2.9): [`quorum`] is the
//! BRs' rule, [`corroboration`] asks remote perspectives over the queue and
//! decides, [`config`] is the `mpic` table of the validator's and the
//! caa-checker's config.

#![forbid(unsafe_code)]

pub mod config;
pub mod corroboration;
pub mod quorum;

pub use config::MpicConfig;
pub use corroboration::{Corroboration, DEFAULT_DEADLINE, RemotePerspective};

/// The CAA checks of a finalize-time recheck: each name with the method
/// that validated it, for the account — the caa-checker's and every remote
/// perspective's alike.
pub fn caa_requests<'a>(
    names: &'a [proto::CaaName],
    account_uri: &'a str,
) -> Vec<dns::caa::CaaRequest<'a>> {
    names
        .iter()
        .map(|n| dns::caa::CaaRequest {
            identifier: &n.name,
            account_uri: Some(account_uri),
            validation_method: n.method.as_deref(),
        })
        .collect()
}
