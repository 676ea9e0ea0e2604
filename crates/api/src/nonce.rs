//! Replay nonces (RFC 8555 §6.5) that any api replica can check.
//!
//! A nonce is `expiry ‖ random ‖ HMAC(key, expiry ‖ random)`: issuing one
//! writes nothing, and a replica recognises a nonce from any other replica
//! because the key lives in the shared database. Using a nonce inserts it
//! into `used_nonces`, so a second use is a primary-key conflict.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::{Problem, ProblemKind};
use openssl::sha::Sha256;
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
}

/// SHA-256's block size, the HMAC pad length.
const BLOCK: usize = 64;

impl Nonces {
    pub async fn load(store: &Store, lifetime_secs: u64) -> Result<Nonces, store::StoreError> {
        let mut fresh = [0u8; 32];
        openssl::rand::rand_bytes(&mut fresh).expect("CSPRNG");
        let key = store.secret("nonce-hmac", &fresh).await?;
        Ok(Nonces::with_key(&key, lifetime_secs))
    }

    fn with_key(key: &[u8], lifetime_secs: u64) -> Nonces {
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

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::sign::Signer;

    /// The precomputed-pad HMAC is HMAC-SHA256: checked against OpenSSL's
    /// own, for a short key and for one longer than a block.
    #[test]
    fn tag_is_truncated_hmac_sha256() {
        for key in [&b"k"[..], &[7u8; 32][..], &[9u8; 100][..]] {
            let nonces = Nonces::with_key(key, 60);
            let body = b"0123456789abcdef";
            let pkey = PKey::hmac(key).unwrap();
            let mut signer = Signer::new(MessageDigest::sha256(), &pkey).unwrap();
            let mac = signer.sign_oneshot_to_vec(body).unwrap();
            assert_eq!(nonces.tag(body), mac[..TAG_LEN]);
        }
    }
}
