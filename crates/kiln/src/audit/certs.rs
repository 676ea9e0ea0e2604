//! One certificate row through every check: its serial (2), its final
//! certificate against its precertificate and both against their issuer
//! (1), the row's own consistency (3), validity and key (6); then the
//! checks of the other modules (4, 5, 7, 8, 9).

use super::der::{self, Cert, oid};
use super::report::Subject;
use super::scan::Audit;
use super::serials;
use store::audit::{AuditAuthz, AuditCertificate, AuditOrder};

/// Slack between the signer's clock at the claim and the notBefore it wrote.
const CLOCK_SLACK_SECS: i64 = 300;

/// The certificates a row holds, parsed.
pub struct Signed<'a> {
    pub precert: Option<Cert<'a>>,
    pub final_cert: Option<Cert<'a>>,
}

impl Signed<'_> {
    /// Each signed certificate, with what it is.
    pub fn each(&self) -> impl Iterator<Item = (&'static str, &Cert<'_>)> {
        [
            ("precertificate", &self.precert),
            ("final certificate", &self.final_cert),
        ]
        .into_iter()
        .filter_map(|(what, cert)| cert.as_ref().map(|c| (what, c)))
    }
}

impl Audit {
    pub(super) async fn certificate(
        &mut self,
        order: &AuditOrder,
        authzs: &[AuditAuthz],
        row: &AuditCertificate,
    ) -> anyhow::Result<()> {
        let subject = || Subject::Serial(row.serial.clone());
        let octets = self.serial(row);
        let signed = Signed {
            precert: self.parsed(row, row.precert_der.as_deref(), "precertificate"),
            final_cert: self.parsed(row, row.final_der.as_deref(), "final certificate"),
        };
        self.row_consistency(row);
        for (what, cert) in signed.each() {
            if octets.as_deref().is_some_and(|o| o != cert.serial) {
                self.report.violation(
                    2,
                    subject(),
                    format!(
                        "the {what}'s serial is {}, not its row's (the same certificate stored \
                         under two serials?)",
                        der::to_hex(cert.serial)
                    ),
                );
            }
        }
        if signed.precert.is_some() || signed.final_cert.is_some() {
            self.signatures_and_swap(row, &signed).await?;
            self.validity_and_key(order, row, &signed).await?;
            self.identifiers(order, authzs, row, &signed);
            self.lint(order, row, &signed);
        }
        if let Some(final_cert) = &signed.final_cert {
            self.scts(row, final_cert).await?;
        }
        self.revocation(row, &signed).await?;
        Ok(())
    }

    fn parsed<'a>(
        &mut self,
        row: &AuditCertificate,
        der: Option<&'a [u8]>,
        what: &str,
    ) -> Option<Cert<'a>> {
        match Cert::parse(der?) {
            Ok(cert) => Some(cert),
            Err(e) => {
                self.report.violation(
                    1,
                    Subject::Serial(row.serial.clone()),
                    format!("the {what} does not parse: {e}"),
                );
                None
            }
        }
    }

    /// Check 2 on the row's serial; its octets when it is hex.
    fn serial(&mut self, row: &AuditCertificate) -> Option<Vec<u8>> {
        self.report.checked(2, 1);
        let (octets, problems) = serials::serial_problems(&row.serial);
        for problem in problems {
            self.report
                .violation(2, Subject::Serial(row.serial.clone()), problem);
        }
        if let Some(octets) = &octets {
            self.frequency.add(octets);
        }
        octets
    }

    /// Check 3 on one row: a final certificate only on an issued row, and
    /// never without its precertificate.
    fn row_consistency(&mut self, row: &AuditCertificate) {
        self.report.checked(3, 1);
        let subject = || Subject::Serial(row.serial.clone());
        if row.final_der.is_some() && row.precert_der.is_none() {
            self.report.violation(
                3,
                subject(),
                "a final certificate with no stored precertificate",
            );
        }
        match (row.state.as_str(), row.final_der.is_some()) {
            ("issued", false) => {
                self.report
                    .violation(3, subject(), "issued, with no final certificate stored")
            }
            (state, true) if state != "issued" => self.report.violation(
                3,
                subject(),
                format!("a final certificate stored on a row in state {state}"),
            ),
            _ => {}
        }
    }

    /// Check 1: the final certificate is its precertificate with the poison
    /// replaced by the SCT list, byte for byte (RFC 6962 §3.1); each is
    /// signed by the issuer its row names; the precertificate is poisoned.
    async fn signatures_and_swap(
        &mut self,
        row: &AuditCertificate,
        signed: &Signed<'_>,
    ) -> anyhow::Result<()> {
        self.report.checked(1, 1);
        let subject = || Subject::Serial(row.serial.clone());
        match self.issuer(row.issuer_id.as_deref()).await? {
            None => self.report.violation(
                1,
                subject(),
                format!(
                    "its issuer {} is not recorded: its signatures cannot be verified",
                    row.issuer_id.as_deref().unwrap_or("(none)")
                ),
            ),
            Some(issuer) => {
                for (what, der) in [
                    ("precertificate", &row.precert_der),
                    ("final certificate", &row.final_der),
                ] {
                    let Some(der) = der else { continue };
                    if !matches!(pkix::certificate_signed_by(der, &issuer.key), Ok(true)) {
                        self.report.violation(
                            1,
                            subject(),
                            format!("the {what} is not signed by its issuer"),
                        );
                    }
                }
            }
        }
        if let Some(precert) = &signed.precert {
            match precert.extension(oid::CT_POISON) {
                Ok(Some(p)) if p.critical && p.value == [0x05, 0x00] => {}
                Ok(_) => self.report.violation(
                    1,
                    subject(),
                    "the precertificate has no critical NULL poison extension",
                ),
                Err(e) => self.report.violation(1, subject(), e),
            }
        }
        let (Some(precert), Some(final_cert)) = (&signed.precert, &signed.final_cert) else {
            return Ok(());
        };
        let sct = match final_cert.extension(oid::CT_SCT_LIST) {
            Ok(Some(sct)) => sct,
            Ok(None) => {
                self.report.violation(
                    1,
                    subject(),
                    "the final certificate has no SCT list extension",
                );
                return Ok(());
            }
            Err(e) => {
                self.report.violation(1, subject(), e);
                return Ok(());
            }
        };
        match der::tbs_with_poison_replaced(precert.tbs, sct.raw) {
            Ok(expected) if expected == final_cert.tbs => {}
            Ok(expected) => self.report.violation(
                1,
                subject(),
                format!(
                    "the final certificate's TBS is not the precertificate's with the poison \
                     replaced by the SCT list: {}",
                    der::tbs_difference(&expected, final_cert.tbs)
                ),
            ),
            Err(e) => self.report.violation(1, subject(), e),
        }
        Ok(())
    }

    /// Check 6: validity within the order's profile and as the row records
    /// it; a key type and size Kiln allows, on no blocklist, not the
    /// account's key.
    async fn validity_and_key(
        &mut self,
        order: &AuditOrder,
        row: &AuditCertificate,
        signed: &Signed<'_>,
    ) -> anyhow::Result<()> {
        self.report.checked(6, 1);
        let subject = || Subject::Serial(row.serial.clone());
        let profile_name = order.profile.as_deref().unwrap_or("classic");
        let Some(profile) = domain::CertificateProfile::from_name(profile_name) else {
            self.report.violation(
                6,
                subject(),
                format!("its order's profile {profile_name:?} is no profile Kiln offers"),
            );
            return Ok(());
        };
        let max_secs = self.settings.validity_secs(profile);
        let claimed = row.created_at.div_euclid(1000);
        let mut digests = Vec::new();
        for (what, cert) in signed.each() {
            let lifetime = cert.not_after - cert.not_before + 1;
            if lifetime > max_secs {
                self.report.violation(
                    6,
                    subject(),
                    format!(
                        "the {what} is valid for {lifetime} s, more than the {profile_name} \
                         profile's {max_secs} s"
                    ),
                );
            }
            if (cert.not_before * 1000, cert.not_after * 1000) != (row.not_before, row.not_after) {
                self.report.violation(
                    6,
                    subject(),
                    format!("the {what}'s validity is not the one its row records"),
                );
            }
            let backdate = Self::backdate_secs();
            if cert.not_before < claimed - backdate - CLOCK_SLACK_SECS
                || cert.not_before > claimed + CLOCK_SLACK_SECS
            {
                self.report.violation(
                    6,
                    subject(),
                    format!(
                        "the {what}'s notBefore is {} s from its serial's claim (the profile \
                         backdates {backdate} s)",
                        cert.not_before - claimed
                    ),
                );
            }
            if let Some(why) = self.key_refusal(cert.spki) {
                self.report
                    .violation(6, subject(), format!("the {what}'s key is {why}"));
            }
            match api::csr::key_digest(cert.spki) {
                Ok(d) if !digests.contains(&d) => digests.push(d),
                Ok(_) => {}
                Err(_) => {
                    self.report
                        .violation(6, subject(), format!("the {what}'s key cannot be read"))
                }
            }
        }
        for digest in &digests {
            if row.spki_sha256.as_deref() != Some(digest.as_str()) {
                self.report.violation(
                    6,
                    subject(),
                    format!(
                        "its row records key {}, not the certificate's {digest}: a \
                         keyCompromise revocation would not find it",
                        row.spki_sha256.as_deref().unwrap_or("(none)")
                    ),
                );
            }
            let blocked_at = if row.spki_sha256.as_deref() == Some(digest.as_str()) {
                row.key_blocked_at
            } else {
                self.store.audit_key_blocked_at(digest.as_str()).await?
            };
            if let Some(at) = blocked_at.filter(|at| *at <= row.created_at) {
                self.report.violation(
                    6,
                    subject(),
                    format!("its key was on the blocklist since {at}, before issuance"),
                );
            }
            let account_key = row
                .account_jwk
                .as_deref()
                .and_then(|jwk| api::jwk::Jwk::from_json(jwk).ok())
                .and_then(|jwk| api::csr::key_digest(jwk.public_key_spki_der()).ok());
            if account_key.as_ref() == Some(digest) {
                self.report
                    .violation(6, subject(), "its key is its account's key");
            }
        }
        Ok(())
    }

    fn backdate_secs() -> i64 {
        signer::certificate::Profile::DEFAULT_BACKDATE.as_secs() as i64
    }

    /// Why Kiln would refuse this leaf key, if it would: the api's CSR key
    /// rules (RSA 2048–8192 in multiples of 8 with e = 65537 and no known
    /// weakness, or P-256/P-384 on the curve), and the weak-key lists.
    fn key_refusal(&self, spki: &[u8]) -> Option<String> {
        let key = match pkix::public_key_from_spki(spki) {
            Ok(key) => key,
            Err(e) => return Some(e.to_string()),
        };
        match key.id() {
            openssl::pkey::Id::EC => None,
            openssl::pkey::Id::RSA => {
                let rsa = key.rsa().ok()?;
                let n = rsa.n().to_vec();
                if let Err(why) = pkix::rsa_key_allowed(&n, &rsa.e().to_vec()) {
                    return Some(why);
                }
                self.settings
                    .weak_keys
                    .contains(&n)
                    .then(|| "on a Debian weak-key list (CVE-2008-0166)".to_string())
            }
            other => Some(format!("of a type Kiln does not issue for ({other:?})")),
        }
    }
}
