//! What the fuzz targets share: the fixed keys their seeds were made with
//! (`make_corpus.py` derives them from fixed scalars) and the properties
//! every accepted JWK must have.

use api::jwk::Jwk;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::sync::LazyLock;

/// The account of `kid` requests and keyChange: `https://ca.test/acme/acct/1`.
pub const ACCOUNT_URL: &str = "https://ca.test/acme/acct/1";
/// The keyChange URL the seeds' inner JWS names.
pub const KEY_CHANGE_URL: &str = "https://ca.test/acme/key-change";

/// The account's current key (P-256), the public half of `OLD_KEY` in
/// `make_corpus.py`.
pub const OLD_KEY_JWK: &str = r#"{"crv":"P-256","kty":"EC","x":"DlPeCk1TAQEgE3JVq7d1Ll6Wsd9stgs3Z-KT_a8i3oQ","y":"lLE4QVBotphHt5uMh7kEsj5sfG9cZ5mKf3qJ69u6evY"}"#;

/// The CT log key of the SCT seeds (`LOG_KEY` in `make_corpus.py`), DER SPKI.
const LOG_SPKI_B64: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEBVq9S1RURxPsLagXPqJsf1ULocDRq8/LEWvBaE6JsJDS50p6CPtf+P5RVdI7m5NNn9RWucsxP+idKODGRDwxLg==";

pub static OLD_KEY: LazyLock<Jwk> =
    LazyLock::new(|| Jwk::from_json(OLD_KEY_JWK).expect("the fixed account key parses"));

pub static LOG_SPKI: LazyLock<Vec<u8>> =
    LazyLock::new(|| STANDARD.decode(LOG_SPKI_B64).expect("fixed base64"));

/// Properties of every key Kiln accepted as a JWK: its canonical JSON (the
/// storage format) reads back as the same key with the same thumbprint,
/// and its SPKI is already canonical, so the blocklist digest exists
/// (`api::csr::key_digest` treats a failure as an internal error).
pub fn check_jwk(jwk: &Jwk) {
    let json = jwk.to_json();
    let again = Jwk::from_json(&json).expect("a JWK's canonical JSON parses");
    assert_eq!(&again, jwk);
    assert_eq!(again.to_json(), json);
    assert_eq!(again.thumbprint(), jwk.thumbprint());
    assert_eq!(again.key_type(), jwk.key_type());
    let value = Jwk::from_value(&jwk.to_value()).expect("a JWK's JSON value parses");
    assert_eq!(&value, jwk);
    let from_key = Jwk::from_public_key(jwk.public_key()).expect("a JWK's own key converts");
    assert_eq!(&from_key, jwk);
    let spki = jwk.public_key_spki_der();
    let canonical = pkix::canonical_spki_der(spki).expect("a JWK's SPKI reads back");
    assert_eq!(canonical, spki, "a JWK's SPKI is canonical");
    api::csr::key_digest(spki).expect("an accepted key has a blocklist digest");
    let _ = api::jws::check_account_key(jwk);
}
