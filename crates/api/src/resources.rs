//! JSON representations of ACME resources (RFC 8555 §7.1), built from rows.

use crate::Api;
use crate::error::problem_json;
use domain::{AuthzStatus, ChallengeStatus, ChallengeType, OrderStatus};
use serde_json::{Value, json};
use store::{Account, Authz, Challenge, Order};

/// RFC 3339 for a stored unix-milliseconds time.
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url)
    }
    pub fn account_url(&self, id: &str) -> String {
        self.url(&format!("/acme/acct/{id}"))
    }
    pub fn order_url(&self, id: &str) -> String {
        self.url(&format!("/acme/order/{id}"))
    }
    pub fn authz_url(&self, id: &str) -> String {
        self.url(&format!("/acme/authz/{id}"))
    }
    pub fn challenge_url(&self, id: &str) -> String {
        self.url(&format!("/acme/chall/{id}"))
    }
    pub fn certificate_url(&self, serial: &str) -> String {
        self.url(&format!("/acme/cert/{serial}"))
    }

    pub fn account_json(&self, account: &Account) -> Value {
        json!({
            "status": account.status.as_str(),
            "contact": account.contact,
            "orders": self.url(&format!("/acme/acct/{}/orders", account.id)),
        })
    }

    /// The status a client sees, derived from the stored order and its
    /// authorizations.
    pub fn order_status(&self, order: &Order, authzs: &[Authz]) -> OrderStatus {
        let now = store::now_ms();
        let statuses: Vec<AuthzStatus> = authzs.iter().map(|a| authz_status(a, now)).collect();
        domain::order_status_on_read(order.status, order.expires_at <= now, &statuses)
    }

    pub fn order_json(&self, order: &Order, authzs: &[Authz]) -> Value {
        let status = self.order_status(order, authzs);
        let mut doc = json!({
            "status": status.as_str(),
            "expires": rfc3339(order.expires_at),
            "identifiers": order.identifiers,
            "authorizations": authzs.iter().map(|a| self.authz_url(&a.id)).collect::<Vec<_>>(),
            "finalize": self.url(&format!("/acme/finalize/{}", order.id)),
        });
        if let Some(nb) = order.not_before {
            doc["notBefore"] = json!(rfc3339(nb));
        }
        if let Some(na) = order.not_after {
            doc["notAfter"] = json!(rfc3339(na));
        }
        if status == OrderStatus::Valid
            && let Some(serial) = &order.certificate_serial
        {
            doc["certificate"] = json!(self.certificate_url(serial));
        }
        if let Some(error) = &order.error {
            doc["error"] = problem_json(error);
        }
        doc["profile"] = json!(order.profile.name());
        // As the client sent it: a client checks it is reflected exactly
        // (RFC 9773 §5).
        if let Some(cert_id) = &order.replaces {
            doc["replaces"] = json!(cert_id);
        }
        doc
    }

    pub fn authz_json(&self, authz: &Authz, challenges: &[Challenge]) -> Value {
        let status = authz_status(authz, store::now_ms());
        // A valid authorization shows only the challenge that validated it.
        // A challenge of a type a newer build added (read back as
        // `Unknown`) is not offered: this replica could not validate it.
        let known = challenges
            .iter()
            .filter(|c| c.kind != ChallengeType::Unknown);
        let shown: Vec<&Challenge> = if status == AuthzStatus::Valid {
            known
                .filter(|c| c.status == ChallengeStatus::Valid)
                .collect()
        } else {
            known.collect()
        };
        let mut doc = json!({
            "identifier": domain::Identifier::from_authz_value(&authz.identifier),
            "status": status.as_str(),
            "expires": rfc3339(authz.expires_at),
            "challenges": shown.iter().map(|c| self.challenge_json(c, &authz.account_id)).collect::<Vec<_>>(),
        });
        if authz.wildcard {
            doc["wildcard"] = json!(true);
        }
        doc
    }

    /// `account_id` owns the challenge's authorization.
    pub fn challenge_json(&self, c: &Challenge, account_id: &str) -> Value {
        let mut doc = json!({
            "type": c.kind.as_str(),
            "url": self.challenge_url(&c.id),
            "status": c.status.as_str(),
        });
        if c.kind == ChallengeType::DnsPersist01 {
            // draft-ietf-acme-dns-persist-01 §3: no token; what the record
            // must name instead.
            doc["accounturi"] = json!(self.account_url(account_id));
            doc["issuer-domain-names"] = json!(self.config.caa_identities);
        } else {
            doc["token"] = json!(c.token);
        }
        if let Some(at) = c
            .validated_at
            .filter(|_| c.status == ChallengeStatus::Valid)
        {
            doc["validated"] = json!(rfc3339(at));
        }
        if let Some(error) = &c.error {
            doc["error"] = problem_json(error);
        }
        doc
    }
}

/// A pending or valid authorization past its expiry reads as `expired`.
pub fn authz_status(authz: &Authz, now: i64) -> AuthzStatus {
    match authz.status {
        AuthzStatus::Pending | AuthzStatus::Valid if authz.expires_at <= now => {
            AuthzStatus::Expired
        }
        s => s,
    }
}
