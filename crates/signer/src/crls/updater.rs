//! The CRL updater: one leader among the signer replicas signs, for each
//! shard of its issuer, a CRL when the shard holds a revocation no stored
//! CRL lists (within `publish_within`), when it has none yet (so a leaf's
//! CRL DP never names a missing CRL for long), and at least every
//! `refresh_secs` whatever happened.

use super::CrlConfig;
use crate::ca::IssuingCa;
use crate::certificate::{CertError, CrlEntry, CrlReason, CrlRequest, Profile, crl_der};
use std::collections::BTreeSet;
use std::time::Duration;
use store::{CrlStatus, RevokedEntry, Store, StoreError, StoredCrl, crl_name, now_ms};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The advisory lock key of the CRL updater ("crls" in ASCII).
const CRL_UPDATER_LOCK: i64 = 0x63726c73;

/// How long after its expiry a revoked certificate stays listed: every CRL
/// signed within a day of the expiry still carries it, so at least one
/// published after the expiry does (BR 4.9.7: not removed before).
const LISTED_AFTER_EXPIRY_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("signing a CRL: {0}")]
    Sign(#[from] CertError),
}

pub struct CrlUpdater {
    pub store: Store,
    pub ca: IssuingCa,
    /// The deployment's leaf profile: each shard's URL is
    /// [`Profile::for_crl_shard`] of it, as in the leaves it covers.
    pub profile: Profile,
    pub config: CrlConfig,
}

impl CrlUpdater {
    /// The updater beside the stage `signer`: its store, CA, profile and
    /// shards.
    pub fn of(signer: &crate::Signer) -> CrlUpdater {
        CrlUpdater {
            store: signer.store.clone(),
            ca: signer.ca.clone(),
            profile: signer.profile.clone(),
            config: signer.crl.clone(),
        }
    }

    /// Leads when it can and publishes until `shutdown`; a replica that is
    /// not the leader tries again at every poll.
    pub async fn run(self, shutdown: CancellationToken) {
        // Four looks per bound: a revocation waits at most a quarter of it
        // for the updater to notice.
        let poll = (self.config.publish_within() / 4)
            .clamp(Duration::from_millis(250), Duration::from_secs(15));
        let mut leadership = None;
        loop {
            if leadership.is_none() {
                leadership = match self.store.try_leadership(CRL_UPDATER_LOCK).await {
                    Ok(lead) => lead,
                    Err(e) => {
                        warn!(error = %e, "CRL updater cannot reach the store");
                        None
                    }
                };
            }
            if let Some(lead) = &mut leadership {
                if lead.still_held().await {
                    if let Err(e) = self.update(now_ms()).await {
                        warn!(error = %e, "CRL update failed; retrying at the next poll");
                    }
                } else {
                    warn!("CRL updater lost its leadership");
                    leadership = None;
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// One pass at `now` (unix ms): signs and stores every CRL that is due,
    /// and says how many it stored.
    pub async fn update(&self, now: i64) -> Result<usize, UpdateError> {
        let issuer_id = self.ca.intermediate.id();
        let statuses = self.store.crl_statuses(issuer_id).await?;
        let mut due: BTreeSet<u32> = self
            .store
            .crl_shards_pending(issuer_id)
            .await?
            .into_iter()
            .collect();
        let refresh_ms = (self.config.refresh_secs as i64).saturating_mul(1000);
        let stale = |s: &CrlStatus| now - s.this_update >= refresh_ms;
        for shard in 0..self.config.shards {
            if statuses.iter().find(|s| s.shard == shard).is_none_or(stale) {
                due.insert(shard);
            }
        }
        // Shards beyond a lowered count stay published while they exist.
        due.extend(statuses.iter().filter(|s| stale(s)).map(|s| s.shard));
        let mut stored = 0;
        for shard in due {
            let previous = statuses.iter().find(|s| s.shard == shard);
            if self.publish(shard, now, previous.map(|s| s.number)).await? {
                stored += 1;
            }
        }
        Ok(stored)
    }

    /// Signs shard `shard`'s CRL as of `now` and stores it; false if another
    /// updater stored a newer one meanwhile.
    async fn publish(
        &self,
        shard: u32,
        now: i64,
        previous: Option<i64>,
    ) -> Result<bool, UpdateError> {
        let issuer_id = self.ca.intermediate.id();
        let listed = self
            .store
            .crl_entries(issuer_id, shard, now - LISTED_AFTER_EXPIRY_MS)
            .await?;
        let entries: Vec<CrlEntry> = listed.iter().filter_map(crl_entry).collect();
        // Millisecond timestamps, and always past the last: increasing
        // across leaders and restarts without a counter to keep.
        let number = previous.map_or(now, |p| now.max(p + 1));
        let name = crl_name(issuer_id, shard);
        let url = self.profile.for_crl_shard(&name).crl_url;
        let this_update = now / 1000;
        let next_update = this_update + self.config.validity_secs as i64;
        let der = crl_der(
            &self.ca.intermediate,
            &CrlRequest {
                number: number as u64,
                this_update,
                next_update,
                shard_url: &url,
                entries: &entries,
            },
        )?;
        let crl = StoredCrl {
            issuer_id: issuer_id.to_string(),
            shard,
            name,
            number,
            this_update: this_update * 1000,
            next_update: next_update * 1000,
            entries: entries.len() as i64,
            der,
        };
        let stored = self.store.store_crl(&crl, &listed).await?;
        if stored {
            metrics::counter!("kiln_crls_signed_total").increment(1);
            let newly = listed.iter().filter(|e| e.pending).count();
            if newly > 0 {
                info!(
                    shard,
                    number,
                    entries = entries.len(),
                    newly,
                    "CRL published"
                );
            }
        }
        Ok(stored)
    }
}

/// A stored revocation as a CRL entry; `None` (and a warning) for a serial
/// that is not hex, which no signer wrote.
fn crl_entry(entry: &RevokedEntry) -> Option<CrlEntry> {
    let Ok(serial) = hex::decode(&entry.serial) else {
        warn!(
            serial = entry.serial,
            "revoked serial is not hex; left off the CRL"
        );
        return None;
    };
    // ACME accepts only the reasons the BRs allow; anything else stored
    // (an older operator tool) is listed as unspecified rather than dropped.
    let reason = entry
        .reason
        .and_then(|code| u8::try_from(code).ok())
        .and_then(CrlReason::from_code)
        .unwrap_or(CrlReason::Unspecified);
    Some(CrlEntry {
        serial,
        revoked_at: entry.revoked_at / 1000,
        reason,
    })
}
