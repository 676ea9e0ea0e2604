//! The issuing certificates: recorded by the signer (the only process that
//! holds the key, and so the one that knows which certificate goes with it),
//! read by the api (the chain after each leaf) and ct-submitter (the issuer
//! after each precertificate). One source for the chain, however many
//! processes need it. A row is named by the SHA-256 of its certificate and
//! never changes, so this handle caches what it has read.

use crate::db::Row;
use crate::{Result, Store, now_ms, stmt};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issuer {
    /// Lowercase hex SHA-256 of `certificate_der`.
    pub id: String,
    /// The issuing (intermediate) certificate.
    pub certificate_der: Vec<u8>,
    /// What follows a leaf signed by it: the issuer and any further
    /// intermediates, as PEM.
    pub chain_pem: String,
}

impl Issuer {
    /// The issuer of `certificate_der`, followed by `chain_pem`.
    pub fn new(certificate_der: Vec<u8>, chain_pem: String) -> Issuer {
        let id = Issuer::id_of(&certificate_der);
        Issuer {
            id,
            certificate_der,
            chain_pem,
        }
    }
}

impl Issuer {
    /// The id of the issuer whose certificate is `certificate_der`: its
    /// SHA-256, in lowercase hex.
    pub fn id_of(certificate_der: &[u8]) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(certificate_der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl Store {
    /// Records an issuer (again, harmlessly, at every signer start).
    pub async fn record_issuer(&self, issuer: &Issuer) -> Result<()> {
        self.db
            .execute(stmt!(
                "INSERT INTO issuers (id, certificate_der, chain_pem, created_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                &issuer.id,
                issuer.certificate_der.as_slice(),
                &issuer.chain_pem,
                now_ms(),
            ))
            .await?;
        Ok(())
    }

    /// The issuer named `id`; `None` for a certificate stored before issuers
    /// were recorded, which gets the most recently recorded one.
    pub async fn issuer(&self, id: Option<&str>) -> Result<Option<Arc<Issuer>>> {
        if let Some(id) = id
            && let Some(known) = self
                .issuers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(id)
        {
            return Ok(Some(known.clone()));
        }
        let row = match id {
            Some(id) => {
                self.db
                    .optional(stmt!("SELECT * FROM issuers WHERE id = $1", id))
                    .await?
            }
            None => {
                self.db
                    .optional(stmt!(
                        "SELECT * FROM issuers ORDER BY created_at DESC, id LIMIT 1"
                    ))
                    .await?
            }
        };
        let Some(issuer) = row.map(|r| Issuer::from_row(&r)).transpose()? else {
            return Ok(None);
        };
        let issuer = Arc::new(issuer);
        self.issuers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(issuer.id.clone(), issuer.clone());
        Ok(Some(issuer))
    }
}

impl Issuer {
    fn from_row(r: &Row) -> Result<Self> {
        Ok(Issuer {
            id: r.text("id")?,
            certificate_der: r.blob("certificate_der")?,
            chain_pem: r.text("chain_pem")?,
        })
    }
}
