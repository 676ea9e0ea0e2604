//! Certificates: one row per serial, reserved before anything is signed
//! with it (invariant 5), then holding the precertificate, the SCT list and
//! the final certificate. The pipeline writes them together with their
//! order (the `finalization` transitions); here they are read and revoked.

use crate::db::Row;
use crate::{KeyDigest, Result, Store, parse, stmt};

/// A serial to reserve before signing.
#[derive(Clone, Debug, PartialEq)]
pub struct NewCertificate {
    pub serial: String,
    pub order_id: String,
    pub account_id: String,
    /// Unix milliseconds.
    pub not_before: i64,
    pub not_after: i64,
    /// The issuer that signs it ([`crate::Issuer::id`]).
    pub issuer_id: String,
    /// The key it certifies (the CSR's), by which a keyCompromise
    /// revocation of any certificate for that key finds this one.
    pub key: KeyDigest,
    /// The CRL shard that will list it if it is revoked: the one its CRL
    /// Distribution Point names.
    pub crl_shard: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateState {
    /// Serial stored, nothing signed yet.
    Reserved,
    /// Precertificate signed and stored.
    Precert,
    /// The final signature may have been made; never sign this serial again.
    FinalSigning,
    Issued,
    /// Given up after a possible signature; the precertificate stays on record.
    Abandoned,
}

impl std::str::FromStr for CertificateState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "reserved" => Self::Reserved,
            "precert" => Self::Precert,
            "final-signing" => Self::FinalSigning,
            "issued" => Self::Issued,
            "abandoned" => Self::Abandoned,
            other => return Err(format!("unknown certificate state {other:?}")),
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CertificateRecord {
    /// Lowercase hex, as in the certificate URL.
    pub serial: String,
    pub order_id: String,
    pub account_id: String,
    pub state: CertificateState,
    pub not_before: i64,
    pub not_after: i64,
    pub precert_der: Option<Vec<u8>>,
    /// The SCT list extension value the final certificate embeds.
    pub sct_list: Option<Vec<u8>>,
    pub final_der: Option<Vec<u8>>,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<i64>,
    /// `None` for certificates stored before issuers were recorded.
    pub issuer_id: Option<String>,
    /// The CRL shard its CRL Distribution Point names.
    pub crl_shard: u32,
}

impl Store {
    pub async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>> {
        let row = self
            .db
            .optional(stmt!(
                "SELECT * FROM certificates WHERE serial = $1",
                serial
            ))
            .await?;
        row.map(|r| CertificateRecord::from_row(&r)).transpose()
    }

    pub async fn certificates_for_order(&self, order_id: &str) -> Result<Vec<CertificateRecord>> {
        let rows = self
            .db
            .all(stmt!(
                "SELECT * FROM certificates WHERE order_id = $1 ORDER BY created_at",
                order_id
            ))
            .await?;
        rows.iter().map(CertificateRecord::from_row).collect()
    }

    /// Marks an issued certificate revoked, for its shard's next CRL; false
    /// if it already was.
    pub async fn revoke_certificate(&self, serial: &str, reason: i64, now: i64) -> Result<bool> {
        let changed = self
            .db
            .execute(stmt!(
                "UPDATE certificates SET revoked_at = $3, revoked_reason = $2, crl_pending = 1
                 WHERE serial = $1 AND state = 'issued' AND revoked_at IS NULL",
                serial,
                reason,
                now,
            ))
            .await?;
        Ok(changed == 1)
    }

    /// The operator's revocation (`kiln revoke`): any serial a signature
    /// may exist for, a precertificate whose final certificate was never
    /// signed included (a precertificate is a promise to issue, so it has
    /// revocation status too), with `reason` (also replacing an earlier
    /// one). False when the serial has nothing signed or was already
    /// revoked for this reason.
    pub async fn revoke_by_operator(&self, serial: &str, reason: i64, now: i64) -> Result<bool> {
        let changed = self
            .db
            .execute(stmt!(
                "UPDATE certificates SET revoked_at = COALESCE(revoked_at, $3),
                                         revoked_reason = $2, crl_pending = 1
                 WHERE serial = $1 AND state IN ('precert', 'final-signing', 'issued', 'abandoned')
                   AND (revoked_at IS NULL OR COALESCE(revoked_reason, -1) <> $2)",
                serial,
                reason,
                now,
            ))
            .await?;
        Ok(changed == 1)
    }
}

impl CertificateRecord {
    fn from_row(r: &Row) -> Result<Self> {
        Ok(CertificateRecord {
            serial: r.text("serial")?,
            order_id: r.text("order_id")?,
            account_id: r.text("account_id")?,
            state: parse(r, "state")?,
            not_before: r.i64("not_before")?,
            not_after: r.i64("not_after")?,
            precert_der: r.opt_blob("precert_der")?,
            sct_list: r.opt_blob("sct_list")?,
            final_der: r.opt_blob("final_der")?,
            revoked_at: r.opt_i64("revoked_at")?,
            revoked_reason: r.opt_i64("revoked_reason")?,
            issuer_id: r.opt_text("issuer_id")?,
            crl_shard: u32::try_from(r.i64("crl_shard")?)
                .map_err(|_| crate::StoreError::Corrupt("CRL shard out of range".into()))?,
        })
    }
}
