//! The flattened JWS of every ACME POST (RFC 8555 §6.2): `api::jws::parse`,
//! then `verify` with the `jwk` header's key or, for `kid`, the account's
//! key, then keyChange's inner JWS (`verify_key_change`, §7.3.5) on the
//! verified payload and on the raw input. Properties: a parsed header
//! matches its own URL and has a nonce; a `jwk` header's key obeys
//! `kiln_fuzz::check_jwk`; POST-as-GET verifies to an empty payload.
#![no_main]

use api::jws::{self, KeyRef};
use kiln_fuzz::{ACCOUNT_URL, KEY_CHANGE_URL, OLD_KEY, check_jwk};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = jws::parse(data) {
        let protected = &parsed.protected;
        assert!(protected.check_url(&protected.url).is_ok());
        assert!(!protected.nonce.is_empty(), "parse requires a nonce");
        let key = match &protected.key {
            KeyRef::Jwk(key) => {
                check_jwk(key);
                key
            }
            KeyRef::Kid(kid) => {
                assert!(!kid.is_empty());
                &*OLD_KEY
            }
        };
        if let Ok(payload) = jws::verify(&parsed, key) {
            if parsed.is_post_as_get() {
                assert!(payload.is_empty());
            }
            if let KeyRef::Kid(kid) = &protected.key
                && let Ok(new_key) = jws::verify_key_change(&payload, &protected.url, kid, &OLD_KEY)
            {
                check_jwk(&new_key);
                assert_ne!(new_key.thumbprint(), OLD_KEY.thumbprint());
            }
        }
    }
    if let Ok(new_key) = jws::verify_key_change(data, KEY_CHANGE_URL, ACCOUNT_URL, &OLD_KEY) {
        check_jwk(&new_key);
        assert_ne!(new_key.thumbprint(), OLD_KEY.thumbprint());
    }
});
