//! Replay nonces (RFC 8555 §6.5) that any api replica can check.
//!
//! A nonce is `expiry ‖ random ‖ HMAC(key, expiry ‖ random)`: issuing one
//! writes nothing, and a replica recognises a nonce from any other replica
//! because the key lives in the shared database. Using a nonce inserts it
//! into `used_nonces`, so a second use is a primary-key conflict.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::{Problem, ProblemKind};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use store::Store;

const TAG_LEN: usize = 16;
const BODY_LEN: usize = 16;

pub struct Nonces {
    key: Vec<u8>,
    lifetime_secs: u64,
}

impl Nonces {
    pub async fn load(store: &Store, lifetime_secs: u64) -> Result<Nonces, store::StoreError> {
        let mut fresh = [0u8; 32];
        openssl::rand::rand_bytes(&mut fresh).expect("CSPRNG");
        let key = store.secret("nonce-hmac", &fresh).await?;
        Ok(Nonces { key, lifetime_secs })
    }

    fn tag(&self, body: &[u8]) -> [u8; TAG_LEN] {
        let key = PKey::hmac(&self.key).expect("HMAC key");
        let mut signer = Signer::new(MessageDigest::sha256(), &key).expect("HMAC signer");
        let mac = signer.sign_oneshot_to_vec(body).expect("HMAC");
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&mac[..TAG_LEN]);
        tag
    }

    pub fn issue(&self) -> String {
        let expiry = store::now_ms() as u64 / 1000 + self.lifetime_secs;
        let mut raw = [0u8; BODY_LEN + TAG_LEN];
        raw[..8].copy_from_slice(&expiry.to_be_bytes());
        openssl::rand::rand_bytes(&mut raw[8..BODY_LEN]).expect("CSPRNG");
        let tag = self.tag(&raw[..BODY_LEN]);
        raw[BODY_LEN..].copy_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Accepts a nonce once: authentic, unexpired and never used before.
    pub async fn consume(&self, store: &Store, nonce: &str) -> Result<(), ApiNonceError> {
        let bad = |why: &str| ApiNonceError::Bad(Problem::new(ProblemKind::BadNonce, why));
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
            return Err(bad("nonce has expired; use the fresh one in this response"));
        }
        match store.consume_nonce(nonce, expiry as i64 * 1000).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(bad(
                "nonce was already used; use the fresh one in this response",
            )),
            Err(e) => Err(ApiNonceError::Store(e)),
        }
    }
}

pub enum ApiNonceError {
    Bad(Problem),
    Store(store::StoreError),
}
