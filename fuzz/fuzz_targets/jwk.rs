//! Public keys as accounts send them: a JWK (JSON) through
//! `api::jwk::Jwk::from_json`, and a DER SubjectPublicKeyInfo (from a
//! certificate or CSR) through `pkix::public_key_from_spki` and
//! `Jwk::from_public_key`. Properties (`kiln_fuzz::check_jwk`): canonical
//! JSON round-trips to the same key and thumbprint; one key, one SPKI, in
//! whichever point encoding it came.
#![no_main]

use api::jwk::Jwk;
use kiln_fuzz::check_jwk;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(jwk) = Jwk::from_json(text)
    {
        check_jwk(&jwk);
    }
    if let Ok(key) = pkix::public_key_from_spki(data) {
        let canonical = pkix::canonical_spki_der(data);
        if let Ok(jwk) = Jwk::from_public_key(&key) {
            check_jwk(&jwk);
            let canonical = canonical.expect("a key that converts to a JWK re-encodes");
            assert_eq!(jwk.public_key_spki_der(), canonical, "one key, one SPKI");
        }
    }
});
