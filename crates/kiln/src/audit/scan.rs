//! The audit's pass over the database: orders a page at a time by primary
//! key, each with its authorizations and certificate rows, handed to the
//! checks; then what only the whole set can tell (the serials' bit
//! frequency, certificate rows without an order).

use super::AuditArgs;
use super::report::{Report, Subject};
use super::serials::BitFrequency;
use super::settings::{self, Settings};
use openssl::pkey::{PKey, Public};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use store::Store;
use store::audit::{AuditAuthz, AuditCertificate, AuditOrder};

/// Certificate rows without an order listed at most.
const ORPHANS_LISTED: i64 = 1000;

/// An issuer as the checks use it.
pub struct IssuerInfo {
    pub key: PKey<Public>,
    /// SHA-256 of its SubjectPublicKeyInfo (a PreCert entry's issuer_key_hash).
    pub key_hash: [u8; 32],
}

/// What the checks share while the pass runs.
pub struct Audit {
    pub store: Store,
    pub settings: Settings,
    pub report: Report,
    pub frequency: BitFrequency,
    /// Names whose CAA check at validation was too old, passed on their
    /// order's finalize-time recheck (recorded per order, not per name).
    pub rechecked_names: u64,
    /// Check 11's totals.
    pub accounts: super::messages::Accounts,
    issuers: HashMap<Option<String>, Option<Arc<IssuerInfo>>>,
    /// The serials each stored CRL lists, by (issuer id, shard); `None`: no
    /// CRL stored for it.
    crls: HashMap<(String, u32), Option<Arc<HashSet<String>>>>,
}

pub async fn run(args: &AuditArgs) -> anyhow::Result<Report> {
    let settings = Settings::from_args(args)?;
    let store = settings::open(args).await?;
    let mut audit = Audit {
        store,
        report: Report::new(args.json),
        frequency: BitFrequency::default(),
        rechecked_names: 0,
        accounts: Default::default(),
        issuers: HashMap::new(),
        crls: HashMap::new(),
        settings,
    };
    audit.limits();
    let by_range = audit.settings.since == i64::MIN;
    let mut after = String::new();
    loop {
        let orders = audit
            .store
            .audit_orders_page(&after, audit.settings.since, audit.settings.page_size)
            .await?;
        let Some(last) = orders.last().map(|o| o.id.clone()) else {
            break;
        };
        let (mut authzs, mut certs, mut dead) = (HashMap::new(), HashMap::new(), HashMap::new());
        if by_range {
            for a in audit.store.audit_authzs_in(&after, &last).await? {
                authzs
                    .entry(a.order_id.clone())
                    .or_insert_with(Vec::new)
                    .push(a);
            }
            for c in audit.store.audit_certificates_in(&after, &last).await? {
                certs
                    .entry(c.order_id.clone())
                    .or_insert_with(Vec::new)
                    .push(c);
            }
            for d in audit.store.audit_dead_letters_in(&after, &last).await? {
                dead.entry(d.subject_id.clone().unwrap_or_default())
                    .or_insert_with(Vec::new)
                    .push(d);
            }
        }
        for order in &orders {
            let (order_authzs, order_certs, order_dead) = if by_range {
                (
                    authzs.remove(&order.id).unwrap_or_default(),
                    certs.remove(&order.id).unwrap_or_default(),
                    dead.remove(&order.id).unwrap_or_default(),
                )
            } else {
                (
                    audit.store.audit_authzs_of(&order.id).await?,
                    audit.store.audit_certificates_of(&order.id).await?,
                    audit.store.dead_letters_of(&order.id).await?,
                )
            };
            audit.order_messages(order, &order_dead);
            audit.order(order, &order_authzs, &order_certs).await?;
        }
        after = last;
    }
    audit.finish().await?;
    Ok(audit.report)
}

impl Audit {
    async fn order(
        &mut self,
        order: &AuditOrder,
        authzs: &[AuditAuthz],
        certs: &[AuditCertificate],
    ) -> anyhow::Result<()> {
        self.order_states(order, certs);
        for cert in certs {
            self.certificate(order, authzs, cert).await?;
        }
        Ok(())
    }

    /// What the stored data cannot show, said once at the start.
    fn limits(&mut self) {
        self.report.note(
            4,
            "validated by a method the CAA record allowed: not checked (CAA records are not \
             stored; the validator checks the method against them at validation)",
        );
        self.report.note(
            6,
            "the account key compared is the account's current one (a key change since \
             issuance is not recorded)",
        );
        if self.settings.logs.is_empty() {
            self.report.not_checked(
                7,
                "no CT log keys: give --ct-log URL=BASE64_KEY or --ct-config FILE (with \
                 --data-dir the fake logs' keys are read from DIR/ct-logs)",
            );
        }
    }

    async fn finish(&mut self) -> anyhow::Result<()> {
        self.message_summary().await?;
        match self.frequency.stuck_bits() {
            Some(stuck) => {
                for detail in stuck {
                    self.report.violation(2, Subject::AllSerials, detail);
                }
            }
            None => self.report.note(
                2,
                format!(
                    "bit-frequency test not made: {} serials of the signer's layout, it needs {}",
                    self.frequency.serials(),
                    super::serials::FREQUENCY_MIN_SERIALS
                ),
            ),
        }
        if self.frequency.other_lengths() > 0 {
            self.report.note(
                2,
                format!(
                    "{} serials not of the signer's {}-octet layout were left out of the \
                     bit-frequency test",
                    self.frequency.other_lengths(),
                    signer::serial::SERIAL_LEN
                ),
            );
        }
        if self.rechecked_names > 0 {
            self.report.note(
                5,
                format!(
                    "{} names were validated longer than the window before issuance and pass \
                     on their order's finalize-time recheck, which is recorded per order \
                     (caa_checked_at), not per name: that each was among the names rechecked \
                     is not in the data",
                    self.rechecked_names
                ),
            );
        }
        let orphans = self
            .store
            .audit_orphan_certificates(self.settings.since, ORPHANS_LISTED)
            .await?;
        for orphan in orphans {
            self.report.violation(
                3,
                Subject::Serial(orphan.serial),
                format!("its order {} does not exist", orphan.order_id),
            );
        }
        Ok(())
    }

    /// The issuer a row names (`None`: the newest, as the api serves
    /// certificates stored before issuers were recorded).
    pub async fn issuer(&mut self, id: Option<&str>) -> anyhow::Result<Option<Arc<IssuerInfo>>> {
        let key = id.map(str::to_string);
        if let Some(known) = self.issuers.get(&key) {
            return Ok(known.clone());
        }
        let info = match self.store.issuer(id).await? {
            Some(issuer) => {
                let key = pkix::certificate_public_key(&issuer.certificate_der)?;
                let key_hash = ct::issuer_key_hash(&issuer.certificate_der)?;
                Some(Arc::new(IssuerInfo { key, key_hash }))
            }
            None => None,
        };
        self.issuers.insert(key, info.clone());
        Ok(info)
    }

    /// The serials on the stored CRL of `issuer_id`'s shard `shard`.
    pub async fn crl_serials(
        &mut self,
        issuer_id: &str,
        shard: u32,
    ) -> anyhow::Result<Option<Arc<HashSet<String>>>> {
        let key = (issuer_id.to_string(), shard);
        if let Some(known) = self.crls.get(&key) {
            return Ok(known.clone());
        }
        let name = store::crl_name(issuer_id, shard);
        let serials = match self.store.crl_named(&name).await? {
            Some(crl) => {
                let crl = openssl::x509::X509Crl::from_der(&crl.der)?;
                let mut serials = HashSet::new();
                for revoked in crl.get_revoked().into_iter().flatten() {
                    let bytes = revoked.serial_number().to_bn()?.to_vec();
                    serials.insert(super::der::to_hex(&bytes));
                }
                Some(Arc::new(serials))
            }
            None => None,
        };
        self.crls.insert(key, serials.clone());
        Ok(serials)
    }
}
