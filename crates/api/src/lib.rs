//! Kiln's ACME front end (RFC 8555): every resource, JWS authentication,
//! nonces, and the one mapping from typed problems to RFC 7807 documents.
//!
//! The api never waits on slow dependencies: finalize moves the order to
//! `processing` with one conditional UPDATE, enqueues the pipeline's first
//! job and answers at once; a challenge POST does the same for validation.
//! Any replica serves any request: nonces are checkable by every replica and
//! all state lives in the shared store (invariant 10).

#![forbid(unsafe_code)]
// ApiError is large, but errors are the cold path of a request.
#![allow(clippy::result_large_err)]

mod account_cache;
mod account_keys;
mod client_addr;
pub mod compat;
pub mod config;
pub mod csr;
mod error;
pub mod finalize_policy;
mod handlers;
pub mod hooks;
mod http_span;
pub mod jwk;
pub mod jws;
mod latency;
pub mod listener;
mod nonce;
pub mod public_http;
pub mod rate_limits;
pub mod replica_role;
pub mod request_limits;
mod resources;

pub use error::{ApiError, problem_json};
pub use finalize_policy::{FinalizeMode, FinalizePolicy};

use axum::Router;
use axum::routing::{get, post};
use queue::Queue;
use std::sync::Arc;
use std::time::Duration;
use store::Store;

#[derive(Clone)]
pub struct ApiConfig {
    /// The scheme, host and port clients use, e.g. `https://127.0.0.1:14443`;
    /// every URL in a response and every JWS `url` is checked against it.
    pub base_url: String,
    pub order_lifetime: Duration,
    pub authz_lifetime: Duration,
    /// A valid authorization of the same account for the same identifier,
    /// validated within this, is reused in a new order (as already valid)
    /// instead of a new pending one, as Let's Encrypt does for as long as
    /// an authorization is valid; zero never reuses. The CAA recheck at
    /// finalize still goes by the validation's age.
    pub authz_reuse: Duration,
    /// How long a nonce stays usable.
    pub nonce_lifetime: Duration,
    /// A finalized order not `valid` by then ends `invalid`.
    pub finalize_timeout: Duration,
    /// A pipeline step not done by then is re-driven by the sweeper: a
    /// finalize's first step, and a challenge's validation (the deadline a
    /// challenge POST sets); the sweeper gives each re-drive the same
    /// (`[runner] step_timeout_secs`, one setting for every stage).
    pub step_timeout: Duration,
    /// `Retry-After` on `processing` orders and challenges.
    pub retry_after: Duration,
    /// Shown in the directory's `meta.caaIdentities`; also the issuer
    /// domain names a dns-persist-01 record must name.
    pub caa_identities: Vec<String>,
    /// The challenge types offered, each where the identifier admits it
    /// (`domain::challenge_types_for`).
    pub challenge_types: Vec<domain::ChallengeType>,
    pub terms_of_service: Option<String>,
    /// Served at `/roots/0` so clients and scripts can fetch the trust anchor.
    pub root_pem: Option<String>,
    /// How long finalize waits; swappable at run time (SIGHUP reload).
    pub finalize: PolicyHandle,
    /// A finalize answered `processing` with no poll after this long counts
    /// as abandoned in the compatibility report.
    pub compat_abandon_after: Duration,
    /// True only when this process is the one api replica on its database
    /// (the all-in-one `kiln`, or an `api` with `[api] sole_replica`, which
    /// holds [`replica_role`]'s lock): nothing else can use a nonce or
    /// change an account, so used nonces and accounts are kept in memory
    /// rather than read and written per request.
    pub sole_replica: bool,
    /// Client-testing hooks, set only by the all-in-one `kiln` (see
    /// [`hooks`]); `None` in production.
    pub client_test_hooks: Option<Arc<dyn hooks::ClientTestHooks>>,
    /// Which DNS names new-order accepts (`domain::identifier_policy`);
    /// the default allows no special-use domain and blocks nothing.
    pub identifiers: Arc<domain::IdentifierPolicy>,
    /// The Debian weak-key lists (CVE-2008-0166) that account and CSR keys
    /// are checked against; none by default.
    pub debian_weak_keys: Arc<pkix::DebianWeakKeys>,
    /// Per-account, per-address and per-domain limits
    /// ([`rate_limits`]); all off by default.
    pub rate_limits: rate_limits::RateLimits,
    /// Behind a TLS-terminating proxy: the header whose last address is
    /// the client's (e.g. `X-Forwarded-For`); `None` takes the TCP peer.
    pub client_address_header: Option<String>,
    /// Requests in flight at once; beyond it a 503 with `Retry-After`
    /// (see [`request_limits`]).
    pub max_in_flight_requests: usize,
    /// RFC 8555 §7.3.4: every new account must be bound to an External
    /// Account Binding key (`kiln eab create`); shown in the directory.
    pub external_account_required: bool,
}

/// The finalize policy in force, replaceable while requests are in flight:
/// a request uses the policy it read at its start.
#[derive(Clone, Debug)]
pub struct PolicyHandle(Arc<std::sync::RwLock<Arc<FinalizePolicy>>>);

impl PolicyHandle {
    pub fn new(policy: FinalizePolicy) -> Self {
        PolicyHandle(Arc::new(std::sync::RwLock::new(Arc::new(policy))))
    }

    pub fn get(&self) -> Arc<FinalizePolicy> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, policy: FinalizePolicy) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }
}

/// Offered unless configured: every type but dns-persist-01, a standing
/// record that an operator turns on deliberately.
pub const DEFAULT_CHALLENGE_TYPES: [domain::ChallengeType; 4] = [
    domain::ChallengeType::Http01,
    domain::ChallengeType::Dns01,
    domain::ChallengeType::TlsAlpn01,
    domain::ChallengeType::DnsAccount01,
];

impl ApiConfig {
    /// A dns-persist-01 challenge lists the CA's issuer domain names, 1 to
    /// 10 of them (draft-ietf-acme-dns-persist §3).
    pub fn check_challenge_types(&self) -> anyhow::Result<()> {
        if self.challenge_types.is_empty() {
            anyhow::bail!("[api] challenge_types is empty: no identifier could be validated");
        }
        let names = self.caa_identities.len();
        if self
            .challenge_types
            .contains(&domain::ChallengeType::DnsPersist01)
            && !(1..=10).contains(&names)
        {
            anyhow::bail!(
                "dns-persist-01 needs 1 to 10 issuer domain names in [acme] caa_identities, not {names}"
            );
        }
        Ok(())
    }

    pub fn new(base_url: impl Into<String>) -> Self {
        ApiConfig {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            order_lifetime: Duration::from_secs(7 * 24 * 3600),
            authz_lifetime: Duration::from_secs(7 * 24 * 3600),
            authz_reuse: Duration::from_secs(7 * 24 * 3600),
            nonce_lifetime: Duration::from_secs(3600),
            finalize_timeout: Duration::from_secs(600),
            step_timeout: Duration::from_secs(60),
            retry_after: Duration::from_secs(1),
            caa_identities: vec!["kiln.test".into()],
            challenge_types: DEFAULT_CHALLENGE_TYPES.to_vec(),
            terms_of_service: None,
            root_pem: None,
            finalize: PolicyHandle::new(FinalizePolicy::fixed(FinalizeMode::Async)),
            compat_abandon_after: Duration::from_secs(600),
            sole_replica: false,
            client_test_hooks: None,
            identifiers: Arc::default(),
            debian_weak_keys: Arc::default(),
            rate_limits: rate_limits::RateLimits::default(),
            client_address_header: None,
            max_in_flight_requests: request_limits::DEFAULT_MAX_IN_FLIGHT,
            external_account_required: false,
        }
    }
}

pub(crate) struct Api {
    pub store: Store,
    pub queue: Arc<dyn Queue>,
    pub nonces: nonce::Nonces,
    pub config: ApiConfig,
    pub latency: latency::Latency,
    pub account_keys: account_keys::AccountKeys,
    pub accounts: account_cache::AccountCache,
    pub rate_limiter: rate_limits::RateLimiter,
    pub in_flight: Arc<tokio::sync::Semaphore>,
}

/// Builds the ACME router. Serve it over HTTPS; `config.base_url` must be
/// the address clients reach it at.
pub async fn router(
    store: Store,
    queue: Arc<dyn Queue>,
    config: ApiConfig,
) -> Result<Router, store::StoreError> {
    let lifetime = config.nonce_lifetime.as_secs();
    let nonces = match config.sole_replica {
        true => nonce::Nonces::sole_replica(lifetime),
        false => nonce::Nonces::shared(&store, lifetime).await?,
    };
    let accounts = account_cache::AccountCache::new(config.sole_replica);
    let rate_limiter = rate_limits::RateLimiter::new(config.rate_limits.clone(), &config.base_url);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(config.max_in_flight_requests));
    let api = Arc::new(Api {
        rate_limiter,
        in_flight,
        accounts,
        store,
        queue,
        nonces,
        config,
        latency: latency::Latency::default(),
        account_keys: account_keys::AccountKeys::default(),
    });
    latency::spawn_refresh(Arc::downgrade(&api));
    use handlers::*;
    Ok(Router::new()
        .route("/directory", get(directory))
        .route("/acme/new-nonce", get(new_nonce_get).head(new_nonce_head))
        .route("/acme/new-account", post(new_account))
        .route("/acme/acct/{id}", post(account))
        .route("/acme/acct/{id}/orders", post(account_orders))
        .route("/acme/key-change", post(key_change))
        .route("/acme/new-order", post(new_order))
        .route("/acme/order/{id}", post(order))
        .route("/acme/authz/{id}", post(authz))
        .route("/acme/chall/{id}", post(challenge))
        .route("/acme/finalize/{id}", post(finalize))
        .route("/acme/cert/{serial}", post(certificate))
        .route("/acme/cert/{serial}/{alternate}", post(certificate))
        .route("/acme/revoke-cert", post(revoke_cert))
        .route("/acme/renewal-info/{cert_id}", get(renewal_info))
        .route("/roots/0", get(root))
        .route("/docs/rate-limits", get(rate_limits_page))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(
            request_limits::MAX_BODY_BYTES,
        ))
        // Inside common_headers, so a 503 still carries a fresh nonce.
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            request_limits::limit_in_flight,
        ))
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            common_headers,
        ))
        // Outermost: one server span per request (the root of an order's
        // trace for finalize), see `http_span`.
        .layer(axum::middleware::from_fn(http_span::trace_request))
        .with_state(api))
}
