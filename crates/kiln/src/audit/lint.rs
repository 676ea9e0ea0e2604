//! Check 8: every signed certificate passes the lint the signer runs
//! before it signs (`signer::certificate::lint_leaf`), with the profile it
//! was signed under: its order's, its CRL shard's distribution point, and
//! the AIA and CRL URLs under the CA's public base URL.

use super::certs::Signed;
use super::report::Subject;
use super::scan::Audit;
use store::audit::{AuditCertificate, AuditOrder};

/// What every leaf's AIA caIssuers URL is under the public base URL.
const AIA_PATH: &str = "/ca/intermediate.der";

impl Audit {
    pub(super) fn lint(&mut self, order: &AuditOrder, row: &AuditCertificate, signed: &Signed<'_>) {
        self.report.checked(8, 1);
        let subject = || Subject::Serial(row.serial.clone());
        let profile_name = order.profile.as_deref().unwrap_or("classic");
        // An unknown profile is check 6's; lint it as the default.
        let profile = domain::CertificateProfile::from_name(profile_name).unwrap_or_default();
        let names: Vec<String> = order.identifiers.iter().map(|i| i.value.clone()).collect();
        let Ok(shard) = u32::try_from(row.crl_shard) else {
            self.report.violation(
                8,
                subject(),
                format!("CRL shard {} is out of range", row.crl_shard),
            );
            return;
        };
        let crl_name = store::crl_name(row.issuer_id.as_deref().unwrap_or(""), shard);
        for (what, cert) in signed.each() {
            let base = match &self.settings.base_url {
                Some(base) => base.clone(),
                None => {
                    let urls = cert.ca_issuers_urls().unwrap_or_default();
                    match urls.iter().find_map(|u| u.strip_suffix(AIA_PATH)) {
                        Some(base) => {
                            self.report.note(
                                8,
                                "the AIA and CRL URLs' base is read from each certificate's \
                                 AIA (give --public-base-url or --signer-config to hold them \
                                 to the CA's)",
                            );
                            base.to_string()
                        }
                        None => {
                            self.report.violation(
                                8,
                                subject(),
                                format!(
                                    "the {what}'s AIA names no caIssuers URL ending \
                                     {AIA_PATH}: {urls:?}"
                                ),
                            );
                            continue;
                        }
                    }
                }
            };
            let leaf_profile = self.settings.profile(&base, profile, &crl_name);
            if let Err(e) = signer::certificate::lint_leaf(cert.der, &names, &leaf_profile) {
                self.report
                    .violation(8, subject(), format!("the {what} fails the lint: {e}"));
            }
        }
    }
}
