//! The issuing certificates: recorded by the signer (the only process that
//! holds the key, and so the one that knows which certificate goes with it),
//! read by the api (the chain after each leaf) and ct-submitter (the issuer
//! after each precertificate). One source for the chain, however many
//! processes need it. A row is named by the SHA-256 of its certificate; its
//! certificate and default chain never change, its alternate chains only
//! when a signer starts with others (migration 13). This handle caches what
//! it has read, and what it records, so a process sees its own signer's
//! record at once; another process's cache keeps the alternates it first
//! read until it restarts.

use crate::db::Row;
use crate::{Result, Store, StoreError, json, now_ms, stmt};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issuer {
    /// Lowercase hex SHA-256 of `certificate_der`.
    pub id: String,
    /// The issuing (intermediate) certificate.
    pub certificate_der: Vec<u8>,
    /// What follows a leaf signed by it: the issuer and any further
    /// intermediates, as PEM, ending below the root.
    pub chain_pem: String,
    /// Other chains for the same leaves (RFC 8555 §7.4.2), each like
    /// `chain_pem` — e.g. the intermediate as a second root cross-signed it.
    /// Alternate `n` (1, 2, …) is `alternate_chains_pem[n - 1]`.
    pub alternate_chains_pem: Vec<String>,
}

impl Issuer {
    /// The issuer of `certificate_der`, followed by `chain_pem`, with no
    /// alternate chains.
    pub fn new(certificate_der: Vec<u8>, chain_pem: String) -> Issuer {
        let id = Issuer::id_of(&certificate_der);
        Issuer {
            id,
            certificate_der,
            chain_pem,
            alternate_chains_pem: Vec::new(),
        }
    }

    /// The same issuer, offering `chains` besides its default chain.
    pub fn with_alternate_chains(mut self, chains: Vec<String>) -> Issuer {
        self.alternate_chains_pem = chains;
        self
    }

    /// Alternate chain `n` (1 for the first), if there is one.
    pub fn alternate_chain(&self, n: usize) -> Option<&str> {
        let index = n.checked_sub(1)?;
        self.alternate_chains_pem.get(index).map(String::as_str)
    }

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
    /// Records an issuer (again, harmlessly, at every signer start). The
    /// alternate chains are the recording signer's: a row recorded before
    /// gets them in place of its own, so adding a cross-signature (or
    /// removing one) takes effect when the signer restarts.
    pub async fn record_issuer(&self, issuer: &Issuer) -> Result<()> {
        self.db
            .execute(stmt!(
                "INSERT INTO issuers (id, certificate_der, chain_pem, created_at, alternate_chains_pem)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET alternate_chains_pem = excluded.alternate_chains_pem",
                &issuer.id,
                issuer.certificate_der.as_slice(),
                &issuer.chain_pem,
                now_ms(),
                json(&issuer.alternate_chains_pem),
            ))
            .await?;
        // The row's certificate and chain are `issuer`'s (the id is the
        // certificate's digest), and its alternates now are too.
        self.issuers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(issuer.id.clone(), Arc::new(issuer.clone()));
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
        let alternates = r.text("alternate_chains_pem")?;
        Ok(Issuer {
            id: r.text("id")?,
            certificate_der: r.blob("certificate_der")?,
            chain_pem: r.text("chain_pem")?,
            alternate_chains_pem: serde_json::from_str(&alternates)
                .map_err(|e| StoreError::Corrupt(format!("alternate_chains_pem: {e}")))?,
        })
    }
}
