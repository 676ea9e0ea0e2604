//! Certificates: one row per serial, reserved before anything is signed
//! with it (invariant 5), then holding the precertificate, the SCT list and
//! the final certificate. The pipeline writes them together with their
//! order (the `finalization` transitions); here they are read and revoked.

use crate::{Result, Store, parse};
use sqlx::Row;
use sqlx::any::AnyRow;

/// A serial to reserve before signing.
#[derive(Clone, Debug, PartialEq)]
pub struct NewCertificate {
    pub serial: String,
    pub order_id: String,
    pub account_id: String,
    /// Unix milliseconds.
    pub not_before: i64,
    pub not_after: i64,
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
}

impl Store {
    pub async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>> {
        let row = sqlx::query("SELECT * FROM certificates WHERE serial = $1")
            .bind(serial)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| CertificateRecord::from_row(&r)).transpose()
    }

    pub async fn certificates_for_order(&self, order_id: &str) -> Result<Vec<CertificateRecord>> {
        let rows =
            sqlx::query("SELECT * FROM certificates WHERE order_id = $1 ORDER BY created_at")
                .bind(order_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(CertificateRecord::from_row).collect()
    }

    /// Marks an issued certificate revoked; false if it already was.
    pub async fn revoke_certificate(&self, serial: &str, reason: i64, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE certificates SET revoked_at = $3, revoked_reason = $2
             WHERE serial = $1 AND state = 'issued' AND revoked_at IS NULL",
        )
        .bind(serial)
        .bind(reason)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl CertificateRecord {
    fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(CertificateRecord {
            serial: r.try_get("serial")?,
            order_id: r.try_get("order_id")?,
            account_id: r.try_get("account_id")?,
            state: parse(r, "state")?,
            not_before: r.try_get("not_before")?,
            not_after: r.try_get("not_after")?,
            precert_der: r.try_get("precert_der")?,
            sct_list: r.try_get("sct_list")?,
            final_der: r.try_get("final_der")?,
            revoked_at: r.try_get("revoked_at")?,
            revoked_reason: r.try_get("revoked_reason")?,
        })
    }
}
