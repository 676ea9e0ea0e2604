//! Rate limits (README "Rate limits"): what an account, an address or a
//! registered domain may do per window, modelled on Let's Encrypt's
//! published limits. A limit reached answers `rateLimited` (429) with
//! `Retry-After` (when the oldest counted event leaves the window) and a
//! `Link: rel="help"` to `/docs/rate-limits`, which lists the limits in force.
//!
//! The counts are rows in the shared database (`store::rate_limits`), so
//! every api replica enforces the same limit (invariant 10). A check and
//! its record are two statements, not one atomic step: requests racing on
//! one bucket may pass the limit by at most their number, which bounds a
//! burst without a lock per request.

use crate::error::ApiError;
use domain::{IdentifierPolicy, ProblemKind};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use store::Store;
use store::rate_limits::{failed_validation_bucket, limit};

const HOUR_MS: i64 = 3_600_000;
/// Events older than the longest window (a week) are pruned this often.
const PRUNE_EVERY_MS: i64 = 10 * 60_000;

/// One key per limit; 0 or absent means off. The same table is the api's
/// `[api.rate_limits]` and the all-in-one's `--rate-limits FILE`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// Accounts created per client address (IPv4, or IPv6 /64) in 3 hours.
    #[serde(default)]
    pub new_accounts_per_ip_per_3h: u32,
    #[serde(default)]
    pub new_orders_per_account_per_3h: u32,
    /// Certificates requested (finalize accepted) per registered domain
    /// (the Public Suffix List's eTLD+1) in 7 days.
    #[serde(default)]
    pub certificates_per_registered_domain_per_week: u32,
    /// Certificates for exactly the same set of names in 7 days.
    #[serde(default)]
    pub duplicate_certificates_per_week: u32,
    /// Challenges that became `invalid` per account and name in an hour.
    #[serde(default)]
    pub failed_validations_per_account_hostname_per_hour: u32,
    /// Authorizations an account may hold `pending` at once.
    #[serde(default)]
    pub pending_authorizations_per_account: u32,
}

impl RateLimits {
    /// Let's Encrypt's published limits (letsencrypt.org/docs/rate-limits):
    /// the production api's defaults when its config has no
    /// `[api.rate_limits]` table.
    pub fn lets_encrypt() -> RateLimits {
        RateLimits {
            new_accounts_per_ip_per_3h: 10,
            new_orders_per_account_per_3h: 300,
            certificates_per_registered_domain_per_week: 50,
            duplicate_certificates_per_week: 5,
            failed_validations_per_account_hostname_per_hour: 5,
            pending_authorizations_per_account: 300,
        }
    }

    /// `/docs/rate-limits`: the limits in force, for the person a
    /// refusal's `Link: rel="help"` sends here.
    pub fn help_page(&self) -> String {
        let mut page = String::from(
            "Rate limits of this ACME server (0 = no limit). A request over a limit is \
             answered 429 rateLimited with Retry-After: the seconds until the oldest counted \
             event leaves its window.\n\n",
        );
        for (what, max, window) in self.describe() {
            page.push_str(&format!("{what}: {max} per {window}\n"));
        }
        page
    }

    /// Each limit with its value and window, for `/docs/rate-limits`.
    pub fn describe(&self) -> Vec<(&'static str, u32, &'static str)> {
        vec![
            (
                "new accounts per client address (IPv6: per /64)",
                self.new_accounts_per_ip_per_3h,
                "3 hours",
            ),
            (
                "new orders per account",
                self.new_orders_per_account_per_3h,
                "3 hours",
            ),
            (
                "certificates per registered domain",
                self.certificates_per_registered_domain_per_week,
                "7 days",
            ),
            (
                "certificates for the same set of names",
                self.duplicate_certificates_per_week,
                "7 days",
            ),
            (
                "failed validations per account and name",
                self.failed_validations_per_account_hostname_per_hour,
                "1 hour",
            ),
            (
                "pending authorizations per account",
                self.pending_authorizations_per_account,
                "account (at any time)",
            ),
        ]
    }
}

/// One sliding-window limit: at most `max` events per bucket in `window_ms`.
#[derive(Clone, Copy)]
struct Window {
    name: &'static str,
    max: u32,
    window_ms: i64,
    what: &'static str,
}

/// The limits in force and the store that counts for them.
pub struct RateLimiter {
    limits: RateLimits,
    /// `{base}/docs/rate-limits`, the `Link: rel="help"` of every refusal.
    help_url: String,
    last_prune: AtomicI64,
}

impl RateLimiter {
    pub fn new(limits: RateLimits, base_url: &str) -> RateLimiter {
        RateLimiter {
            limits,
            help_url: format!("{base_url}/docs/rate-limits"),
            last_prune: AtomicI64::new(0),
        }
    }

    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Before creating an account for a client at `addr`.
    pub async fn check_new_account(
        &self,
        store: &Store,
        addr: Option<IpAddr>,
        now: i64,
    ) -> Result<(), ApiError> {
        let (w, Some(addr)) = (self.new_accounts(), addr) else {
            return Ok(());
        };
        self.check(store, w, &address_bucket(addr), now).await
    }

    pub async fn note_new_account(&self, store: &Store, addr: Option<IpAddr>, now: i64) {
        if let Some(addr) = addr {
            self.record(store, self.new_accounts(), vec![address_bucket(addr)], now)
                .await;
        }
    }

    /// Before creating an order for `names`, one new authorization each.
    pub async fn check_new_order(
        &self,
        store: &Store,
        account_id: &str,
        names: &[String],
        names_policy: &IdentifierPolicy,
        now: i64,
    ) -> Result<(), ApiError> {
        self.check(store, self.new_orders(), account_id, now)
            .await?;
        let max_pending = self.limits.pending_authorizations_per_account;
        if max_pending > 0 {
            let pending = store.pending_authz_count(account_id, now).await?;
            if pending + names.len() as i64 > i64::from(max_pending) {
                return Err(self.refusal(
                    format!(
                        "too many pending authorizations: this account has {pending} and may hold \
                         {max_pending}; finish or deactivate some first"
                    ),
                    None,
                ));
            }
        }
        let failures = self.failed_validations();
        for name in names {
            let base = name.strip_prefix("*.").unwrap_or(name);
            self.check(
                store,
                failures,
                &failed_validation_bucket(account_id, base),
                now,
            )
            .await?;
        }
        self.check_certificate(store, names, names_policy, now)
            .await
    }

    pub async fn note_new_order(&self, store: &Store, account_id: &str, now: i64) {
        self.record(store, self.new_orders(), vec![account_id.to_string()], now)
            .await;
    }

    /// Before a certificate for `names` is requested (new-order and
    /// finalize): per registered domain and per exact set of names.
    pub async fn check_certificate(
        &self,
        store: &Store,
        names: &[String],
        names_policy: &IdentifierPolicy,
        now: i64,
    ) -> Result<(), ApiError> {
        let per_domain = self.certificates_per_domain();
        for domain in registered_domains(names, names_policy) {
            self.check(store, per_domain, &domain, now).await?;
        }
        self.check(store, self.duplicates(), &name_set_bucket(names), now)
            .await
    }

    /// A finalize was accepted: one certificate requested for `names`.
    pub async fn note_certificate(
        &self,
        store: &Store,
        names: &[String],
        names_policy: &IdentifierPolicy,
        now: i64,
    ) {
        let domains = registered_domains(names, names_policy)
            .into_iter()
            .collect();
        self.record(store, self.certificates_per_domain(), domains, now)
            .await;
        self.record(store, self.duplicates(), vec![name_set_bucket(names)], now)
            .await;
    }

    async fn check(
        &self,
        store: &Store,
        w: Window,
        bucket: &str,
        now: i64,
    ) -> Result<(), ApiError> {
        if w.max == 0 {
            return Ok(());
        }
        let recent = store
            .recent_rate_limit_events(w.name, bucket, now - w.window_ms, w.max)
            .await?;
        if recent.len() < w.max as usize {
            return Ok(());
        }
        // The oldest of the `max` newest events frees a place when it
        // leaves the window.
        let frees_at = recent[recent.len() - 1] + w.window_ms;
        let wait_secs = ((frees_at - now).max(1) + 999) / 1000;
        Err(self.refusal(
            format!(
                "too many {}: {} in the last {}; retry after {wait_secs} s",
                w.what,
                w.max,
                window_text(w.window_ms)
            ),
            Some(wait_secs as u64),
        ))
    }

    /// Counts one event per bucket. A count that fails is logged, never
    /// the failure of the request it counts (which has already happened).
    async fn record(&self, store: &Store, w: Window, buckets: Vec<String>, now: i64) {
        if w.max == 0 || buckets.is_empty() {
            return;
        }
        if let Err(e) = store.record_rate_limit_events(w.name, &buckets, now).await {
            tracing::warn!(limit = w.name, error = %e, "counting a rate-limited event failed");
        }
        let last = self.last_prune.load(Ordering::Relaxed);
        if now - last >= PRUNE_EVERY_MS
            && self
                .last_prune
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            // Every window is at most a week.
            && let Err(e) = store.prune_rate_limit_events(now - 7 * 24 * HOUR_MS).await
        {
            tracing::warn!(error = %e, "pruning rate-limit events failed");
        }
    }

    fn refusal(&self, detail: String, retry_after_secs: Option<u64>) -> ApiError {
        let mut e =
            ApiError::new(ProblemKind::RateLimited, detail).with_link(&self.help_url, "help");
        if let Some(secs) = retry_after_secs {
            e = e.with_retry_after(secs);
        }
        e
    }

    fn new_accounts(&self) -> Window {
        Window {
            name: limit::NEW_ACCOUNTS,
            max: self.limits.new_accounts_per_ip_per_3h,
            window_ms: 3 * HOUR_MS,
            what: "new accounts from this address",
        }
    }

    fn new_orders(&self) -> Window {
        Window {
            name: limit::NEW_ORDERS,
            max: self.limits.new_orders_per_account_per_3h,
            window_ms: 3 * HOUR_MS,
            what: "new orders for this account",
        }
    }

    fn certificates_per_domain(&self) -> Window {
        Window {
            name: limit::CERTIFICATES_PER_DOMAIN,
            max: self.limits.certificates_per_registered_domain_per_week,
            window_ms: 7 * 24 * HOUR_MS,
            what: "certificates for this registered domain",
        }
    }

    fn duplicates(&self) -> Window {
        Window {
            name: limit::DUPLICATE_CERTIFICATES,
            max: self.limits.duplicate_certificates_per_week,
            window_ms: 7 * 24 * HOUR_MS,
            what: "certificates for exactly this set of names",
        }
    }

    fn failed_validations(&self) -> Window {
        Window {
            name: limit::FAILED_VALIDATIONS,
            max: self.limits.failed_validations_per_account_hostname_per_hour,
            window_ms: HOUR_MS,
            what: "failed validations for this account and name",
        }
    }
}

/// IPv4 per address; IPv6 per /64, the smallest prefix a subscriber gets.
fn address_bucket(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The distinct registered domains (eTLD+1) of `names`; a name the list
/// does not know counts as its own.
fn registered_domains(names: &[String], names_policy: &IdentifierPolicy) -> BTreeSet<String> {
    names
        .iter()
        .map(|n| {
            let base = n.strip_prefix("*.").unwrap_or(n);
            names_policy
                .registered_domain(base)
                .unwrap_or(base)
                .to_string()
        })
        .collect()
}

/// The set of names, order-insensitive: what "the same certificate" means.
fn name_set_bucket(names: &[String]) -> String {
    let set: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    set.into_iter().collect::<Vec<_>>().join(",")
}

fn window_text(ms: i64) -> String {
    match ms / HOUR_MS {
        1 => "hour".into(),
        h if h % 24 == 0 => format!("{} days", h / 24),
        h => format!("{h} hours"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_share_a_slash_64_and_mapped_v4_is_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_bucket(a), address_bucket(b));
        assert_ne!(address_bucket(a), address_bucket(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_bucket(mapped), "192.0.2.7");
    }

    #[test]
    fn the_same_names_in_another_order_are_a_duplicate() {
        let one = vec!["b.example.com".to_string(), "a.example.com".to_string()];
        let two = vec!["a.example.com".to_string(), "b.example.com".to_string()];
        assert_eq!(name_set_bucket(&one), name_set_bucket(&two));
        assert_ne!(name_set_bucket(&one), name_set_bucket(&one[..1]));
    }

    #[test]
    fn windows_read_as_people_say_them() {
        assert_eq!(window_text(HOUR_MS), "hour");
        assert_eq!(window_text(3 * HOUR_MS), "3 hours");
        assert_eq!(window_text(7 * 24 * HOUR_MS), "7 days");
    }

    #[test]
    fn an_empty_table_is_every_limit_off_and_unknown_keys_are_refused() {
        let off: RateLimits = toml::from_str("").unwrap();
        assert_eq!(off, RateLimits::default());
        assert!(toml::from_str::<RateLimits>("new_orders_per_hour = 3").is_err());
        let some: RateLimits = toml::from_str("new_orders_per_account_per_3h = 3").unwrap();
        assert_eq!(some.new_orders_per_account_per_3h, 3);
    }
}
