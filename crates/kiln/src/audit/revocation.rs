//! Check 9: every serial a precertificate may have been signed with has
//! revocation status (a precertificate is a promise to issue, BRs
//! 7.1.2.9). A CRL lists every revoked row of its issuer and shard,
//! whatever its state, so a row needs: a state the pipeline and the
//! revocation code know (`precert-signing` included), an issuer, a CRL
//! distribution point naming its shard's CRL; and once revoked, to be on
//! that CRL (or still pending, for less than the BRs' 24 hours).

use super::certs::Signed;
use super::report::Subject;
use super::scan::Audit;
use store::audit::AuditCertificate;

/// Every state a row may be in; each has revocation status.
const STATES: [&str; 5] = [
    "precert-signing",
    "precert",
    "final-signing",
    "issued",
    "abandoned",
];
/// BR 4.9.7: a revocation is on a CRL within 24 hours.
const PUBLISH_WITHIN_MS: i64 = 24 * 3600 * 1000;

impl Audit {
    pub(super) async fn revocation(
        &mut self,
        row: &AuditCertificate,
        signed: &Signed<'_>,
    ) -> anyhow::Result<()> {
        self.report.checked(9, 1);
        let subject = || Subject::Serial(row.serial.clone());
        match row.state.as_str() {
            state if STATES.contains(&state) => {}
            "reserved" => self.report.violation(
                9,
                subject(),
                "reserved: a precertificate may have been signed for it, but only \
                 precert-signing says so (migration 15 turns every reserved row into one)",
            ),
            other => self.report.violation(
                9,
                subject(),
                format!("state {other:?} is none the pipeline and the CRLs know"),
            ),
        }
        let Some(issuer_id) = row.issuer_id.as_deref() else {
            self.report
                .violation(9, subject(), "it names no issuer: no CRL can list it");
            return Ok(());
        };
        let Ok(shard) = u32::try_from(row.crl_shard) else {
            self.report.violation(
                9,
                subject(),
                format!("CRL shard {} is out of range", row.crl_shard),
            );
            return Ok(());
        };
        if let Some(shards) = self.settings.crl_shards.filter(|n| shard >= *n) {
            self.report.violation(
                9,
                subject(),
                format!("CRL shard {shard} is not one of the signer's {shards}"),
            );
        }
        let name = store::crl_name(issuer_id, shard);
        let path = format!("{}{name}", store::CRL_PATH);
        for (what, cert) in signed.each() {
            match cert.crl_urls() {
                Ok(urls) if urls.iter().any(|u| u.ends_with(&path)) => {}
                Ok(urls) => self.report.violation(
                    9,
                    subject(),
                    format!(
                        "the {what}'s CRL distribution point {urls:?} is not its shard's, {name}"
                    ),
                ),
                Err(e) => self.report.violation(
                    9,
                    subject(),
                    format!("the {what}'s CRL distribution point cannot be read: {e}"),
                ),
            }
        }
        let Some(revoked_at) = row.revoked_at else {
            return Ok(());
        };
        if row.not_after <= self.settings.now {
            // Expired: a CRL may leave it out from now on.
            return Ok(());
        }
        if row.crl_pending {
            if revoked_at < self.settings.now - PUBLISH_WITHIN_MS {
                self.report.violation(
                    9,
                    subject(),
                    format!(
                        "revoked {} h ago and on no CRL yet (BR 4.9.7: within 24 h)",
                        (self.settings.now - revoked_at) / 3_600_000
                    ),
                );
            }
            return Ok(());
        }
        let serial = row.serial.trim_start_matches("00").to_string();
        match self.crl_serials(issuer_id, shard).await? {
            None => self.report.violation(
                9,
                subject(),
                format!("revoked and marked published, but no CRL {name} is stored"),
            ),
            Some(listed) if !listed.contains(&serial) => self.report.violation(
                9,
                subject(),
                format!("revoked and marked published, but not on CRL {name}"),
            ),
            Some(_) => {}
        }
        Ok(())
    }
}
