//! Check 7: every SCT a final certificate embeds verifies against the key
//! of a configured log, over the precertificate entry rebuilt from the
//! final certificate as a relying party rebuilds it (its TBS without the
//! SCT list, and its issuer's key hash; RFC 6962 §3.2), and they come from
//! as many logs and operators as the CT policy wants for its lifetime.

use super::der::{Cert, oid};
use super::report::Subject;
use super::scan::Audit;
use base64::Engine as _;
use std::collections::HashSet;
use store::audit::AuditCertificate;

impl Audit {
    pub(super) async fn scts(
        &mut self,
        row: &AuditCertificate,
        final_cert: &Cert<'_>,
    ) -> anyhow::Result<()> {
        if self.settings.logs.is_empty() {
            return Ok(());
        }
        self.report.checked(7, 1);
        let subject = || Subject::Serial(row.serial.clone());
        let Ok(Some(extension)) = final_cert.extension(oid::CT_SCT_LIST) else {
            self.report
                .violation(7, subject(), "the final certificate embeds no SCT list");
            return Ok(());
        };
        if row.sct_list.as_deref() != Some(extension.value) {
            self.report.violation(
                7,
                subject(),
                "the final certificate's SCT list is not the one its row stores",
            );
        }
        let scts = match ct::decode_sct_list_extension(extension.value) {
            Ok(scts) => scts,
            Err(e) => {
                self.report
                    .violation(7, subject(), format!("the SCT list does not parse: {e}"));
                return Ok(());
            }
        };
        let Some(issuer) = self.issuer(row.issuer_id.as_deref()).await? else {
            self.report.violation(
                7,
                subject(),
                "its issuer is not recorded: the precertificate entry cannot be rebuilt",
            );
            return Ok(());
        };
        let tbs = match ct::tbs_without_extension(final_cert.der, ct::SCT_LIST_OID) {
            Ok(tbs) => tbs,
            Err(e) => {
                self.report.violation(7, subject(), e.to_string());
                return Ok(());
            }
        };
        let (mut logs, mut operators, mut rfc6962) = (HashSet::new(), HashSet::new(), 0);
        for sct in &scts {
            let Some(log) = self.settings.logs.get(&sct.log_id) else {
                self.report.violation(
                    7,
                    subject(),
                    format!(
                        "an SCT from log {} is from no configured log",
                        base64::engine::general_purpose::STANDARD.encode(sct.log_id)
                    ),
                );
                continue;
            };
            let verified =
                ct::precert_signed_data(sct.timestamp, &issuer.key_hash, &tbs, &sct.extensions)
                    .and_then(|data| ct::verify_sct(sct, &log.public_key_der, &data));
            match verified {
                Ok(()) => {
                    if logs.insert(sct.log_id) {
                        operators.insert(log.operator.clone());
                        rfc6962 += usize::from(log.kind == ct_submitter::LogKind::Rfc6962);
                    }
                }
                Err(e) => self.report.violation(
                    7,
                    subject(),
                    format!("the SCT from {} does not verify: {e}", log.name),
                ),
            }
        }
        let needed = self
            .settings
            .policy
            .requirement(final_cert.not_before, final_cert.not_after);
        if logs.len() < needed.scts
            || operators.len() < needed.operators
            || rfc6962 < needed.rfc6962
        {
            self.report.violation(
                7,
                subject(),
                format!(
                    "{} verified SCTs from {} operators ({} from RFC 6962 logs); the policy \
                     wants {needed}",
                    logs.len(),
                    operators.len(),
                    rfc6962
                ),
            );
        }
        Ok(())
    }
}
