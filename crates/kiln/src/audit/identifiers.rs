//! Checks 4 and 5, for every name a signed certificate carries: it is one
//! of its order's identifiers, with a valid authorization of the same
//! account, validated before issuance and not expired at it (4); and CAA
//! was checked for it within the window before issuance (5) — at
//! validation, which the authorization's `validated_at` records per name
//! (the validator checks CAA right after the challenge), or by the
//! finalize-time recheck, which the order's `caa_checked_at` records.

use super::certs::Signed;
use super::report::Subject;
use super::scan::Audit;
use store::audit::{AuditAuthz, AuditCertificate, AuditOrder};

/// Clocks of different stages may disagree by this much.
const CLOCK_SLACK_MS: i64 = 60_000;

/// Authorization states that may follow `valid` (a client's deactivation,
/// a revocation, an expiry shown on read): fine if it was valid when used.
const ONCE_VALID: [&str; 4] = ["valid", "deactivated", "revoked", "expired"];

impl Audit {
    pub(super) fn identifiers(
        &mut self,
        order: &AuditOrder,
        authzs: &[AuditAuthz],
        row: &AuditCertificate,
        signed: &Signed<'_>,
    ) {
        self.report.checked(4, 1);
        self.report.checked(5, 1);
        let subject = || Subject::Serial(row.serial.clone());
        let mut names: Vec<String> = Vec::new();
        for (what, cert) in signed.each() {
            match cert.san_names() {
                Ok(found) => names.extend(found),
                Err(e) => self.report.violation(
                    4,
                    subject(),
                    format!("the {what}'s names cannot be read: {e}"),
                ),
            }
        }
        names.sort();
        names.dedup();
        if row.account_jwk.is_none() {
            self.report.violation(
                4,
                subject(),
                format!("its account {} does not exist", row.account_id),
            );
        }
        if row.account_id != order.account_id {
            self.report.violation(
                4,
                subject(),
                format!(
                    "its account {} is not its order's, {}",
                    row.account_id, order.account_id
                ),
            );
        }
        // Issued when its serial was claimed (the precertificate) and, for
        // the final certificate, when its order became valid.
        let claimed = row.created_at;
        let finished = match (&row.final_der, order.completed_at) {
            (Some(_), Some(at)) => at.max(claimed),
            _ => claimed,
        };
        let ordered: Vec<String> = order
            .identifiers
            .iter()
            .map(|i| i.value.to_ascii_lowercase())
            .collect();
        for name in &names {
            if !ordered.contains(name) {
                self.report.violation(
                    4,
                    subject(),
                    format!("{name} is not one of its order's identifiers"),
                );
            }
            let (base, wildcard) = match name.strip_prefix("*.") {
                Some(base) => (base, true),
                None => (name.as_str(), false),
            };
            let Some(authz) = authzs
                .iter()
                .find(|a| a.identifier.eq_ignore_ascii_case(base) && a.wildcard == wildcard)
            else {
                self.report.violation(
                    4,
                    subject(),
                    format!("{name} has no authorization in its order"),
                );
                continue;
            };
            self.authorization(row, authz, name, claimed, finished);
            if name.parse::<std::net::IpAddr>().is_err() {
                self.caa(order, row, authz, name, claimed);
            }
        }
    }

    fn authorization(
        &mut self,
        row: &AuditCertificate,
        authz: &AuditAuthz,
        name: &str,
        claimed: i64,
        finished: i64,
    ) {
        let subject = || Subject::Serial(row.serial.clone());
        let id = &authz.id;
        if authz.account_id != row.account_id {
            self.report.violation(
                4,
                subject(),
                format!(
                    "{name}: authorization {id} is account {}'s, not {}'s",
                    authz.account_id, row.account_id
                ),
            );
        }
        if !ONCE_VALID.contains(&authz.status.as_str()) {
            self.report.violation(
                4,
                subject(),
                format!(
                    "{name}: authorization {id} is {}, never valid",
                    authz.status
                ),
            );
        }
        match authz.validated_at {
            None => self.report.violation(
                4,
                subject(),
                format!("{name}: authorization {id} was never validated"),
            ),
            Some(at) if at > claimed + CLOCK_SLACK_MS => self.report.violation(
                4,
                subject(),
                format!(
                    "{name}: authorization {id} was validated {} s after issuance",
                    (at - claimed) / 1000
                ),
            ),
            Some(_) => {}
        }
        if authz.expires_at <= finished {
            self.report.violation(
                4,
                subject(),
                format!(
                    "{name}: authorization {id} expired {} s before issuance",
                    (finished - authz.expires_at) / 1000
                ),
            );
        }
    }

    fn caa(
        &mut self,
        order: &AuditOrder,
        row: &AuditCertificate,
        authz: &AuditAuthz,
        name: &str,
        claimed: i64,
    ) {
        let window = self.settings.caa_window_ms;
        let fresh = |at: Option<i64>| {
            at.is_some_and(|at| at >= claimed - window && at <= claimed + CLOCK_SLACK_MS)
        };
        if fresh(authz.validated_at) {
            return;
        }
        if fresh(order.caa_checked_at) {
            self.rechecked_names += 1;
            return;
        }
        let ago = |at: Option<i64>| match at {
            Some(at) => format!("{} s before issuance", (claimed - at) / 1000),
            None => "never".into(),
        };
        self.report.violation(
            5,
            Subject::Serial(row.serial.clone()),
            format!(
                "{name}: CAA was last checked at validation {} and rechecked at finalize {}, \
                 not within {} s before issuance",
                ago(authz.validated_at),
                ago(order.caa_checked_at),
                window / 1000
            ),
        );
    }
}
