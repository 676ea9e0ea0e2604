//! Replay nonces (RFC 8555 §6.5) that any api replica can check.
//!
//! A nonce is `expiry ‖ id ‖ HMAC(key, expiry ‖ id)`, the id random or (in
//! a sole replica) a counter; the tag makes every nonce unpredictable to
//! anyone without the key (§6.5), and issuing one writes nothing. Where a
//! used nonce is remembered depends on how many api replicas share the
//! database ([`Ledger`]):
//!
//! - **shared** (distributed): the key lives in the database, so a replica
//!   recognises a nonce from any other, and using a nonce inserts it into
//!   `used_nonces`, so a second use is a primary-key conflict;
//! - **sole replica** (the all-in-one `kiln`): nothing else can take a
//!   nonce, so used ones are marked in a bounded window in memory, with no
//!   database write per request. The key is fresh at every start, so a
//!   nonce from before a restart is refused (`badNonce`, which clients
//!   answer by retrying with the fresh nonce of the refusal).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::{Problem, ProblemKind};
use openssl::sha::Sha256;
use std::sync::Mutex;
use store::Store;

const TAG_LEN: usize = 16;
const BODY_LEN: usize = 16;

pub struct Nonces {
    /// HMAC-SHA256 (RFC 2104) with the key's inner and outer pads already
    /// absorbed: a tag costs two short hashes, where OpenSSL's EVP HMAC
    /// set itself up anew for every nonce issued and checked.
    inner: Sha256,
    outer: Sha256,
    lifetime_secs: u64,
    ledger: Ledger,
}

/// Where used nonces are remembered (see the module comment).
enum Ledger {
    Shared,
    SoleReplica(Mutex<Window>),
}

/// Nonces issued by this process, numbered; a nonce is usable while its
/// number is among the last [`WINDOW`] issued and its bit is clear.
/// Memory is fixed (128 KiB) whatever the load: under a flood the oldest
/// unused nonces fall out of the window and are refused as expired.
struct Window {
    next: u64,
    used: Vec<u64>,
}

/// Nonces a sole replica remembers: minutes of issuance at full load, far
/// more than clients hold at once (each holds one or two).
const WINDOW: u64 = 1 << 20;

impl Window {
    fn new() -> Window {
        Window {
            next: 0,
            used: vec![0; (WINDOW / 64) as usize],
        }
    }

    /// The next number; its slot, last held by the nonce `WINDOW` before,
    /// starts unused.
    fn issue(&mut self) -> u64 {
        let serial = self.next;
        self.next += 1;
        let (word, bit) = Self::slot(serial);
        self.used[word] &= !bit;
        serial
    }

    /// Marks `serial` used; `Err` says why it cannot be.
    fn consume(&mut self, serial: u64) -> Result<(), &'static str> {
        if serial >= self.next || self.next - serial > WINDOW {
            return Err(TOO_OLD);
        }
        let (word, bit) = Self::slot(serial);
        if self.used[word] & bit != 0 {
            return Err(REPLAYED);
        }
        self.used[word] |= bit;
        Ok(())
    }

    fn slot(serial: u64) -> (usize, u64) {
        ((serial % WINDOW / 64) as usize, 1 << (serial % 64))
    }
}

const TOO_OLD: &str = "nonce has expired; use the fresh one in this response";
const REPLAYED: &str = "nonce was already used; use the fresh one in this response";

/// SHA-256's block size, the HMAC pad length.
const BLOCK: usize = 64;

impl Nonces {
    /// Nonces every replica on `store` shares: the key from the database.
    pub async fn shared(store: &Store, lifetime_secs: u64) -> Result<Nonces, store::StoreError> {
        let key = store.secret("nonce-hmac", &fresh_key()).await?;
        Ok(Nonces::with_key(&key, lifetime_secs, Ledger::Shared))
    }

    /// Nonces of the only api replica: a fresh key, used ones in memory.
    pub fn sole_replica(lifetime_secs: u64) -> Nonces {
        let ledger = Ledger::SoleReplica(Mutex::new(Window::new()));
        Nonces::with_key(&fresh_key(), lifetime_secs, ledger)
    }

    fn with_key(key: &[u8], lifetime_secs: u64, ledger: Ledger) -> Nonces {
        let mut block = [0u8; BLOCK];
        if key.len() > BLOCK {
            block[..32].copy_from_slice(&openssl::sha::sha256(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let pad = |byte: u8| {
            let mut hasher = Sha256::new();
            hasher.update(&block.map(|b| b ^ byte));
            hasher
        };
        Nonces {
            inner: pad(0x36),
            outer: pad(0x5c),
            lifetime_secs,
            ledger,
        }
    }

    fn tag(&self, body: &[u8]) -> [u8; TAG_LEN] {
        let mut inner = self.inner.clone();
        inner.update(body);
        let mut outer = self.outer.clone();
        outer.update(&inner.finish());
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&outer.finish()[..TAG_LEN]);
        tag
    }

    pub fn issue(&self) -> String {
        let expiry = store::now_ms() as u64 / 1000 + self.lifetime_secs;
        let mut raw = [0u8; BODY_LEN + TAG_LEN];
        raw[..8].copy_from_slice(&expiry.to_be_bytes());
        match &self.ledger {
            Ledger::Shared => openssl::rand::rand_bytes(&mut raw[8..BODY_LEN]).expect("CSPRNG"),
            Ledger::SoleReplica(window) => {
                let serial = lock(window).issue();
                raw[8..BODY_LEN].copy_from_slice(&serial.to_be_bytes());
            }
        }
        let tag = self.tag(&raw[..BODY_LEN]);
        raw[BODY_LEN..].copy_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Checks that a nonce is authentic and unexpired; a sole replica also
    /// marks it used here. What is left is the caller's (see [`Redemption`]).
    pub fn check(&self, nonce: &str) -> Result<Redemption, Problem> {
        let bad = |why: &str| Problem::new(ProblemKind::BadNonce, why);
        let raw = URL_SAFE_NO_PAD
            .decode(nonce)
            .map_err(|_| bad("nonce is not one this server issued"))?;
        if raw.len() != BODY_LEN + TAG_LEN
            || !openssl::memcmp::eq(&self.tag(&raw[..BODY_LEN]), &raw[BODY_LEN..])
        {
            return Err(bad("nonce is not one this server issued"));
        }
        let expiry = u64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
        if expiry * 1000 < store::now_ms() as u64 {
            return Err(bad(TOO_OLD));
        }
        match &self.ledger {
            Ledger::Shared => Ok(Redemption::InStore {
                expires_at: expiry as i64 * 1000,
            }),
            Ledger::SoleReplica(window) => {
                let serial = u64::from_be_bytes(raw[8..BODY_LEN].try_into().expect("8 bytes"));
                lock(window).consume(serial).map_err(bad)?;
                Ok(Redemption::Done)
            }
        }
    }
}

/// What is left to do for a nonce that [`Nonces::check`] accepted.
#[must_use = "a shared nonce is single-use only once it is redeemed in the store"]
pub enum Redemption {
    /// Nothing: it is marked used (sole replica).
    Done,
    /// Insert it into `used_nonces` (shared by replicas); a conflict means
    /// it was used before ([`replayed`]).
    InStore { expires_at: i64 },
}

/// The answer to a nonce used before.
pub fn replayed() -> Problem {
    Problem::new(ProblemKind::BadNonce, REPLAYED)
}

fn fresh_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    openssl::rand::rand_bytes(&mut key).expect("CSPRNG");
    key
}

fn lock(window: &Mutex<Window>) -> std::sync::MutexGuard<'_, Window> {
    window.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::sign::Signer;

    /// A sole replica's nonce is usable once, not after a restart (a new
    /// key), and not once a window of newer nonces has been issued.
    #[test]
    fn sole_replica_nonces_are_single_use_and_bounded() {
        let nonces = Nonces::sole_replica(60);
        let refused = |r: Result<Redemption, Problem>| match r {
            Err(p) => p.detail,
            Ok(_) => panic!("accepted"),
        };
        let first = nonces.issue();
        assert!(matches!(nonces.check(&first), Ok(Redemption::Done)));
        assert!(refused(nonces.check(&first)).contains("already used"));
        let restarted = Nonces::sole_replica(60);
        let held = nonces.issue();
        assert!(refused(restarted.check(&held)).contains("not one this server"));
        for _ in 0..WINDOW {
            nonces.issue();
        }
        assert!(refused(nonces.check(&held)).contains("expired"));
        assert!(matches!(
            nonces.check(&nonces.issue()),
            Ok(Redemption::Done)
        ));
    }

    /// A shared nonce is left for the database to mark.
    #[test]
    fn shared_nonces_are_redeemed_in_the_store() {
        let nonces = Nonces::with_key(&[1; 32], 60, Ledger::Shared);
        let nonce = nonces.issue();
        assert!(matches!(
            nonces.check(&nonce),
            Ok(Redemption::InStore { .. })
        ));
        assert!(matches!(
            nonces.check(&nonce),
            Ok(Redemption::InStore { .. })
        ));
        let other = Nonces::with_key(&[2; 32], 60, Ledger::Shared);
        assert!(other.check(&nonce).is_err(), "another key's nonce");
    }

    /// The precomputed-pad HMAC is HMAC-SHA256: checked against OpenSSL's
    /// own, for a short key and for one longer than a block.
    #[test]
    fn tag_is_truncated_hmac_sha256() {
        for key in [&b"k"[..], &[7u8; 32][..], &[9u8; 100][..]] {
            let nonces = Nonces::with_key(key, 60, Ledger::Shared);
            let body = b"0123456789abcdef";
            let pkey = PKey::hmac(key).unwrap();
            let mut signer = Signer::new(MessageDigest::sha256(), &pkey).unwrap();
            let mac = signer.sign_oneshot_to_vec(body).unwrap();
            assert_eq!(nonces.tag(body), mac[..TAG_LEN]);
        }
    }
}
