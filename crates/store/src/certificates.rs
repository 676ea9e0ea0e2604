//! Certificates: one row per serial, written as the claim on its order's
//! sign-precert step before anything is signed with it (invariant 5), then
//! holding the precertificate, the SCT list and the final certificate. The pipeline writes them together with their
//! order (the `finalization` transitions); here they are read and revoked.

use crate::db::Row;
use crate::{KeyDigest, Result, Store, parse, stmt};

/// A serial to claim an order's sign-precert step with, before signing.
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

/// Where a serial is in its life, as `certificates.state` holds it (the
/// strings are what the database holds: `crates/store/tests/vectors`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateState {
    /// Serial stored, nothing signed yet: written only by builds before
    /// migration 15 (which made every such row `precert-signing`, since a
    /// precertificate may have been signed for it), still read from a
    /// replica of such a build during a rolling deploy.
    Reserved,
    /// The serial claimed its order's sign-precert step and a
    /// precertificate may have been signed with it: committed before the
    /// signature (invariant 5). It has revocation status (a precertificate
    /// is a promise to issue, BRs 7.1.2.9), and stays in this state for
    /// good if the signer died before storing the precertificate; the
    /// order then starts over with a new serial.
    PrecertSigning,
    /// Precertificate signed and stored.
    Precert,
    /// The final signature may have been made; never sign this serial again.
    FinalSigning,
    Issued,
    /// Given up after a possible signature; the precertificate stays on record.
    Abandoned,
    /// A state this build does not know, stored by a newer replica (a
    /// rolling deploy): read rather than failing the request, and left
    /// alone by the pipeline. Never written by this build.
    Unknown,
}

impl CertificateState {
    /// What the database holds for it (`unknown` for [`Self::Unknown`],
    /// which is never written).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::PrecertSigning => "precert-signing",
            Self::Precert => "precert",
            Self::FinalSigning => "final-signing",
            Self::Issued => "issued",
            Self::Abandoned => "abandoned",
            Self::Unknown => "unknown",
        }
    }
}

impl std::str::FromStr for CertificateState {
    type Err = String;
    /// Never fails: a value this build does not know is [`Self::Unknown`].
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "reserved" => Self::Reserved,
            "precert-signing" => Self::PrecertSigning,
            "precert" => Self::Precert,
            "final-signing" => Self::FinalSigning,
            "issued" => Self::Issued,
            "abandoned" => Self::Abandoned,
            _ => Self::Unknown,
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
    /// Unix ms: when the serial was claimed, before anything was signed
    /// with it (how old a `precert-signing` claim is).
    pub created_at: i64,
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
    /// may exist for, with `reason` (also replacing an earlier one). That
    /// is every row, whatever its state: a row is written only as the
    /// claim made right before a precertificate is signed (invariant 5),
    /// so `precert-signing` (a signer that died mid-signing, or lost its
    /// claim to a redelivery), `precert` and `abandoned` (a precertificate
    /// whose final certificate was never signed: a precertificate is a
    /// promise to issue, BRs 7.1.2.9, so it has revocation status too),
    /// `reserved` (from builds before migration 15) and a state only a
    /// newer build knows all count. False when the serial is not on
    /// record or was already revoked for this reason.
    pub async fn revoke_by_operator(&self, serial: &str, reason: i64, now: i64) -> Result<bool> {
        let changed = self
            .db
            .execute(stmt!(
                "UPDATE certificates SET revoked_at = COALESCE(revoked_at, $3),
                                         revoked_reason = $2, crl_pending = 1
                 WHERE serial = $1
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
            created_at: r.i64("created_at")?,
        })
    }
}
