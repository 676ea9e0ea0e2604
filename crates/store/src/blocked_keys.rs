//! Blocked keys (BR 6.1.1.3): public keys Kiln refuses from then on, as an
//! account key and in a CSR. A key is blocked when a certificate is revoked
//! for keyCompromise — in the same transaction as the revocation, so a
//! revoked-for-compromise certificate never leaves its key usable, and
//! with every other unexpired certificate for the key revoked too (BR
//! 4.9.1.1) — or when an operator adds it. Rows are only ever added.
//!
//! A key is named by a [`KeyDigest`], the SHA-256 of its DER
//! SubjectPublicKeyInfo. The store does not parse keys: the caller hashes
//! the canonical encoding (EC points uncompressed; the api's
//! `csr::key_digest`), or the same key would have two names.

use crate::db::{Backend, Row, Script, Stmt};
use crate::{Result, Store, stmt};
use domain::{Problem, ProblemKind};

/// The name of a public key in the blocklist: lowercase hex of the SHA-256
/// of its canonical DER SubjectPublicKeyInfo.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyDigest(String);

impl KeyDigest {
    /// The digest of `spki_der`, which must already be canonical.
    pub fn of_spki(spki_der: &[u8]) -> KeyDigest {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(spki_der);
        KeyDigest(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// A digest written out by an operator (64 hex digits, either case),
    /// e.g. from `openssl pkey -pubin -outform DER | sha256sum`; `None` for
    /// anything else.
    pub fn from_hex(hex: &str) -> Option<KeyDigest> {
        let hex = hex.trim();
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| KeyDigest(hex.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockedKey {
    pub digest: KeyDigest,
    /// The certificate whose keyCompromise revocation blocked the key;
    /// `None` when an operator added it.
    pub revoked_serial: Option<String>,
    /// Why, for the operator (e.g. where the key was found published).
    pub comment: String,
    pub created_at: i64,
}

/// What a client is told when `what` (e.g. "the CSR's key") is on the
/// blocklist, with `kind` `badPublicKey` for an account key and `badCSR`
/// for a certificate's key: an in-flight order's error when its key is
/// blocked before the signer claims it ([`Store::claim_precert`]), in the
/// words of the api's refusal at newAccount, keyChange and finalize.
pub(crate) fn blocked_key_problem(kind: ProblemKind, what: &str) -> Problem {
    Problem::new(
        kind,
        format!(
            "{what} is on this CA's blocklist of compromised keys \
             (e.g. a certificate for it was revoked for keyCompromise); generate a new key"
        ),
    )
}

/// Serializes, on PostgreSQL, a claim for `key` (`Store::claim_precert`)
/// with a keyCompromise revocation blocking it: the first statement of
/// both transactions. Under READ COMMITTED each statement sees what was
/// committed when it began, so without it a claim whose check ran before
/// the revocation committed, and which committed after the revocation's
/// sweep of the key's certificates began, would leave a serial for a
/// blocked key unrevoked. With it, one waits for the other's commit: the
/// claim then sees the key blocked, or the revocation sees (and revokes)
/// the claim. SQLite's one writer serializes them already. The two-int4
/// key space, apart from the bigint one of `leadership`'s locks.
pub(crate) fn lock_key(script: Script, key: &KeyDigest) -> Script {
    /// "kb": the class of blocked-key locks.
    const CLASS: i64 = 0x6b62;
    // A digest's first 32 bits (a digest is hex): keys that share them
    // only share a lock.
    let hash = key
        .0
        .get(..8)
        .and_then(|prefix| u32::from_str_radix(prefix, 16).ok())
        .unwrap_or(0) as i32;
    let lock: Stmt = stmt!(
        "SELECT pg_advisory_xact_lock(CAST($1 AS integer), CAST($2 AS integer))",
        CLASS,
        i64::from(hash),
    );
    script.only_on(Backend::Postgres, lock)
}

/// RFC 5280 CRLReason keyCompromise.
const KEY_COMPROMISE: i64 = 1;

/// What a keyCompromise revocation changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyCompromiseRevocation {
    /// The certificate asked for: its revocation changed.
    pub revoked: bool,
    /// Other unexpired issued certificates for the key, revoked (or their
    /// reason raised) with it.
    pub others: u64,
}

impl Store {
    /// Adds a key to the blocklist (an operator's act, or a revocation's);
    /// false if it was already there, in which case the first entry stays.
    pub async fn block_key(&self, key: &BlockedKey) -> Result<bool> {
        let added = self
            .db
            .execute(stmt!(
                "INSERT INTO blocked_keys (spki_sha256, revoked_serial, comment, created_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (spki_sha256) DO NOTHING",
                key.digest.as_str(),
                key.revoked_serial.as_deref(),
                &key.comment,
                key.created_at,
            ))
            .await?;
        Ok(added == 1)
    }

    /// Whether the key is blocked: one primary-key probe, made on every
    /// newAccount, keyChange and finalize.
    pub async fn is_key_blocked(&self, digest: &KeyDigest) -> Result<bool> {
        let row = self
            .db
            .optional(stmt!(
                "SELECT 1 AS blocked FROM blocked_keys WHERE spki_sha256 = $1",
                digest.as_str()
            ))
            .await?;
        Ok(row.is_some())
    }

    pub async fn blocked_key(&self, digest: &KeyDigest) -> Result<Option<BlockedKey>> {
        let row = self
            .db
            .optional(stmt!(
                "SELECT * FROM blocked_keys WHERE spki_sha256 = $1",
                digest.as_str()
            ))
            .await?;
        row.map(|r| BlockedKey::from_row(&r)).transpose()
    }

    /// Revokes an issued certificate for keyCompromise, blocks its key
    /// (`key`, the certificate's) and revokes every other unexpired
    /// certificate for that key (BR 4.9.1.1), in one transaction: issued
    /// ones, and those whose precertificate is or may be signed (still in
    /// the pipeline, or given up after it), since a precertificate is a
    /// promise to issue and its serial's revocation covers both. A
    /// certificate already revoked for another reason has its reason raised
    /// to keyCompromise (its revocation time stays); one already revoked for
    /// keyCompromise is left alone. Nothing happens unless `serial` is
    /// issued; its key is blocked then even if its revocation did not
    /// change. Certificates reserved before their key was recorded
    /// (migration 8) are not found by key.
    pub async fn revoke_for_key_compromise(
        &self,
        serial: &str,
        key: &KeyDigest,
        now: i64,
    ) -> Result<KeyCompromiseRevocation> {
        let script = lock_key(Script::new(), key)
            .then(stmt!(
                "UPDATE certificates SET revoked_at = COALESCE(revoked_at, $3), revoked_reason = $2,
                                        crl_pending = 1
                 WHERE serial = $1 AND state = 'issued'
                   AND (revoked_at IS NULL OR revoked_reason IS NULL OR revoked_reason <> $2)",
                serial,
                KEY_COMPROMISE,
                now,
            ))
            .then(stmt!(
                "INSERT INTO blocked_keys (spki_sha256, revoked_serial, comment, created_at)
                 SELECT $1, serial, 'revoked for keyCompromise', $3 FROM certificates
                 WHERE serial = $2 AND state = 'issued'
                 ON CONFLICT (spki_sha256) DO NOTHING",
                key.as_str(),
                serial,
                now,
            ))
            .then(stmt!(
                "UPDATE certificates SET revoked_at = COALESCE(revoked_at, $3), revoked_reason = $2,
                                        crl_pending = 1
                 WHERE spki_sha256 = $1 AND serial <> $4 AND not_after > $3
                   AND state IN ('precert-signing', 'precert', 'final-signing', 'issued', 'abandoned')
                   AND (revoked_at IS NULL OR revoked_reason IS NULL OR revoked_reason <> $2)
                   AND EXISTS (SELECT 1 FROM certificates asked
                               WHERE asked.serial = $4 AND asked.state = 'issued')",
                key.as_str(),
                KEY_COMPROMISE,
                now,
                serial,
            ));
        let outcome = self.db.run(script).await?;
        Ok(KeyCompromiseRevocation {
            // Step 0 is the lock.
            revoked: outcome.rows(1) == 1,
            others: outcome.rows(3),
        })
    }
}

impl BlockedKey {
    fn from_row(r: &Row) -> Result<Self> {
        Ok(BlockedKey {
            digest: KeyDigest(r.text("spki_sha256")?),
            revoked_serial: r.opt_text("revoked_serial")?,
            comment: r.text("comment")?,
            created_at: r.i64("created_at")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::KeyDigest;

    #[test]
    fn a_digest_is_lowercase_hex_of_sha256() {
        assert_eq!(
            KeyDigest::of_spki(b"").as_str(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let upper = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
        assert_eq!(KeyDigest::from_hex(upper), Some(KeyDigest::of_spki(b"")));
        for bad in ["", "e3b0", &format!("{upper}00"), &"g".repeat(64)] {
            assert_eq!(KeyDigest::from_hex(bad), None, "{bad:?}");
        }
    }
}
