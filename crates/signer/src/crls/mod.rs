//! Revocation published: which CRL shard a certificate belongs to (decided
//! once, when its serial is reserved, and written into its CRL DP), and
//! the updater that signs each shard's CRL (`updater`). Only the signer
//! holds the issuing key, so only the signer signs CRLs; the public HTTP
//! listener serves what it stored.

mod updater;

pub use updater::CrlUpdater;

use serde::Deserialize;
use std::time::Duration;

/// `[signer.crl]`: how revocations are published.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CrlConfig {
    /// CRL shards per issuer (BR 7.2.2 partitioned CRLs): a relying party
    /// fetches only its certificate's shard. Fixed for a CA's lifetime in
    /// practice: a certificate keeps the shard it was issued with, and
    /// shards beyond the count are still published while they list any.
    #[serde(default = "default_shards")]
    pub shards: u32,
    /// A revocation is on the served CRL within this (BR 4.9.7 allows 24 h).
    #[serde(default = "default_publish_within_secs")]
    pub publish_within_secs: u64,
    /// Every shard's CRL is signed again at least this often, revoked or
    /// not (BR 4.9.7: at least every 7 days).
    #[serde(default = "default_refresh_secs")]
    pub refresh_secs: u64,
    /// nextUpdate − thisUpdate (BR 4.9.7: at most 10 days); more than
    /// `refresh_secs`, so a relying party never holds an expired CRL while a
    /// fresher one is due.
    #[serde(default = "default_validity_secs")]
    pub validity_secs: u64,
}

fn default_shards() -> u32 {
    16
}
fn default_publish_within_secs() -> u64 {
    60
}
fn default_refresh_secs() -> u64 {
    6 * 3600
}
fn default_validity_secs() -> u64 {
    7 * 24 * 3600
}

impl Default for CrlConfig {
    fn default() -> Self {
        CrlConfig {
            shards: default_shards(),
            publish_within_secs: default_publish_within_secs(),
            refresh_secs: default_refresh_secs(),
            validity_secs: default_validity_secs(),
        }
    }
}

impl CrlConfig {
    /// Refuses what would break a promise: no shards, a validity the BRs
    /// forbid, or a refresh that lets a CRL expire before the next.
    pub fn check(&self) -> Result<(), String> {
        if self.shards == 0 || self.shards > 1024 {
            return Err(format!("crl.shards must be 1..=1024, not {}", self.shards));
        }
        if self.publish_within_secs == 0 {
            return Err("crl.publish_within_secs must be at least 1".into());
        }
        let max = crate::certificate::MAX_CRL_VALIDITY_SECS as u64;
        if self.validity_secs == 0 || self.validity_secs > max {
            return Err(format!(
                "crl.validity_secs must be 1..={max} (BR 4.9.7: nextUpdate at most 10 days on), not {}",
                self.validity_secs
            ));
        }
        if self.refresh_secs == 0 || self.refresh_secs >= self.validity_secs {
            return Err(format!(
                "crl.refresh_secs ({}) must be at least 1 and less than crl.validity_secs ({})",
                self.refresh_secs, self.validity_secs
            ));
        }
        Ok(())
    }

    pub fn publish_within(&self) -> Duration {
        Duration::from_secs(self.publish_within_secs)
    }

    /// The shard of a certificate with this serial: from its random bytes
    /// (after the deployment's prefix byte), so shards fill evenly.
    pub fn shard_of(&self, serial: &[u8]) -> u32 {
        let mut random = [0u8; 8];
        for (slot, byte) in random.iter_mut().zip(serial.iter().skip(1)) {
            *slot = *byte;
        }
        (u64::from_be_bytes(random) % u64::from(self.shards.max(1))) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_come_from_the_random_part_and_fill_evenly() {
        let config = CrlConfig {
            shards: 4,
            ..CrlConfig::default()
        };
        let mut counts = [0u32; 4];
        for _ in 0..4000 {
            let serial = crate::serial::new_serial(0x01).unwrap();
            counts[config.shard_of(&serial) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&n| (800..1200).contains(&n)),
            "{counts:?}"
        );
        // The prefix byte does not move a serial between shards.
        let mut serial = crate::serial::new_serial(0x01).unwrap();
        let shard = config.shard_of(&serial);
        serial[0] = 0x7f;
        assert_eq!(config.shard_of(&serial), shard);
    }

    #[test]
    fn what_the_brs_forbid_is_refused() {
        assert_eq!(CrlConfig::default().check(), Ok(()));
        let bad = |c: CrlConfig| c.check().unwrap_err();
        let d = CrlConfig::default;
        assert!(bad(CrlConfig { shards: 0, ..d() }).contains("shards"));
        assert!(
            bad(CrlConfig {
                validity_secs: 11 * 86_400,
                ..d()
            })
            .contains("10 days")
        );
        assert!(
            bad(CrlConfig {
                refresh_secs: 7 * 86_400,
                ..d()
            })
            .contains("less than")
        );
        assert!(
            bad(CrlConfig {
                publish_within_secs: 0,
                ..d()
            })
            .contains("publish_within")
        );
    }
}
