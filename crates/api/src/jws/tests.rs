//! Tests of JWS parsing, verification and keyChange, beside `jws.rs`.

use super::*;
use openssl::ec::{EcGroup, EcKey};
use openssl::rsa::Rsa;
use std::sync::OnceLock;

const URL: &str = "https://ca.test/acme/new-order";
const NONCE: &str = "bm9uY2Utb25l";

fn p256() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn p384() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::SECP384R1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// RSA generation is slow; share one key between tests.
fn rsa2048() -> PKey<Private> {
    static KEY: OnceLock<PKey<Private>> = OnceLock::new();
    KEY.get_or_init(|| PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap())
        .clone()
}

fn ed25519() -> PKey<Private> {
    PKey::generate_ed25519().unwrap()
}

fn alg_for(key: &PKey<Private>) -> &'static str {
    match key.id() {
        Id::RSA => "RS256",
        Id::ED25519 => "EdDSA",
        _ if key.bits() == 256 => "ES256",
        _ => "ES384",
    }
}

fn jwk_header(key: &PKey<Private>) -> Value {
    json!({"nonce": NONCE, "url": URL, "jwk": jwk_of(key)})
}

fn err_kind(body: &str) -> ProblemKind {
    parse(body.as_bytes()).unwrap_err().kind
}

/// Re-encodes the outer JSON of a flattened JWS with one member replaced.
fn with_member(body: &str, name: &str, value: Value) -> String {
    let mut v: Value = serde_json::from_str(body).unwrap();
    v[name] = value;
    v.to_string()
}

#[test]
fn sign_parse_verify_every_algorithm() {
    for (key, alg) in [
        (p256(), "ES256"),
        (p384(), "ES384"),
        (rsa2048(), "RS256"),
        (ed25519(), "EdDSA"),
    ] {
        let body = sign_flattened(&key, alg, jwk_header(&key), br#"{"x":1}"#);
        let jws = parse(body.as_bytes()).unwrap();
        assert_eq!(jws.protected.alg, alg);
        assert_eq!(jws.protected.nonce, NONCE);
        assert_eq!(jws.protected.url, URL);
        let KeyRef::Jwk(jwk) = &jws.protected.key else {
            panic!("expected jwk");
        };
        assert_eq!(verify(&jws, jwk).unwrap(), br#"{"x":1}"#, "{alg}");
        check_account_key(jwk).unwrap();
        jws.protected.check_url(URL).unwrap();
        assert_eq!(
            jws.protected
                .check_url("https://ca.test/other")
                .unwrap_err()
                .kind,
            ProblemKind::Unauthorized
        );
    }
}

#[test]
fn kid_and_post_as_get() {
    let key = p256();
    let body = sign_flattened(
        &key,
        "ES256",
        json!({"nonce": NONCE, "url": URL, "kid": "https://ca.test/acme/acct/1"}),
        b"",
    );
    let jws = parse(body.as_bytes()).unwrap();
    assert_eq!(
        jws.protected.key,
        KeyRef::Kid("https://ca.test/acme/acct/1".into())
    );
    assert!(jws.is_post_as_get());
    let stored = Jwk::from_public_key(&key).unwrap();
    assert!(verify(&jws, &stored).unwrap().is_empty());
}

#[test]
fn tampered_payload_or_wrong_key_fails() {
    for key in [p256(), p384(), rsa2048(), ed25519()] {
        let alg = alg_for(&key);
        let body = sign_flattened(&key, alg, jwk_header(&key), b"{}");
        let tampered = with_member(&body, "payload", json!(URL_SAFE_NO_PAD.encode("{ }")));
        let jws = parse(tampered.as_bytes()).unwrap();
        let KeyRef::Jwk(jwk) = &jws.protected.key else {
            panic!("expected jwk");
        };
        let err = verify(&jws, jwk).unwrap_err();
        assert_eq!(err.kind, ProblemKind::Malformed, "{alg}");
        assert_eq!(err.detail, "JWS signature is invalid");
    }
    // Right type of key, but not the one that signed.
    let body = sign_flattened(&p256(), "ES256", jwk_header(&p256()), b"{}");
    let jws = parse(body.as_bytes()).unwrap();
    let other = Jwk::from_public_key(&p256()).unwrap();
    assert_eq!(
        verify(&jws, &other).unwrap_err().kind,
        ProblemKind::Malformed
    );
}

#[test]
fn alg_must_fit_key() {
    for (key, alg) in [
        (p256(), "ES384"),
        (p384(), "ES256"),
        (rsa2048(), "EdDSA"),
        (ed25519(), "RS256"),
    ] {
        let body = sign_flattened(&key, alg, jwk_header(&key), b"{}");
        let jws = parse(body.as_bytes()).unwrap();
        let KeyRef::Jwk(jwk) = &jws.protected.key else {
            panic!("expected jwk");
        };
        let err = verify(&jws, jwk).unwrap_err();
        assert_eq!(err.kind, ProblemKind::BadSignatureAlgorithm, "{alg}");
    }
}

#[test]
fn unsupported_algorithms() {
    let key = p256();
    for alg in ["HS256", "none", "ES512", "PS256"] {
        let body = sign_flattened(&key, alg, jwk_header(&key), b"{}");
        let err = parse(body.as_bytes()).unwrap_err();
        assert_eq!(err.kind, ProblemKind::BadSignatureAlgorithm, "{alg}");
        assert_eq!(
            err.detail,
            format!("alg {alg} is not supported; use one of ES256, ES384, RS256, EdDSA")
        );
    }
}

#[test]
fn header_key_rules() {
    let key = p256();
    let both = json!({"nonce": NONCE, "url": URL, "jwk": jwk_of(&key), "kid": "k"});
    let err = parse(sign_flattened(&key, "ES256", both, b"{}").as_bytes()).unwrap_err();
    assert_eq!(err.kind, ProblemKind::Malformed);
    assert!(err.detail.contains("both jwk and kid"), "{}", err.detail);

    let neither = json!({"nonce": NONCE, "url": URL});
    let err = parse(sign_flattened(&key, "ES256", neither, b"{}").as_bytes()).unwrap_err();
    assert_eq!(err.kind, ProblemKind::Malformed);
    assert!(err.detail.contains("neither jwk nor kid"), "{}", err.detail);

    let private = json!({"nonce": NONCE, "url": URL,
        "jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"}});
    let err = parse(sign_flattened(&key, "ES256", private, b"{}").as_bytes()).unwrap_err();
    assert_eq!(err.kind, ProblemKind::Malformed);
}

#[test]
fn nonce_and_url_rules() {
    let key = p256();
    let no_nonce = json!({"url": URL, "jwk": jwk_of(&key)});
    assert_eq!(
        err_kind(&sign_flattened(&key, "ES256", no_nonce, b"{}")),
        ProblemKind::BadNonce
    );
    let bad_nonce = json!({"nonce": "not base64!", "url": URL, "jwk": jwk_of(&key)});
    assert_eq!(
        err_kind(&sign_flattened(&key, "ES256", bad_nonce, b"{}")),
        ProblemKind::Malformed
    );
    let no_url = json!({"nonce": NONCE, "jwk": jwk_of(&key)});
    let err = parse(sign_flattened(&key, "ES256", no_url, b"{}").as_bytes()).unwrap_err();
    assert_eq!(err.kind, ProblemKind::Malformed);
    assert_eq!(err.detail, "protected header has no url");
    let numeric_url = json!({"nonce": NONCE, "url": 7, "jwk": jwk_of(&key)});
    assert_eq!(
        err_kind(&sign_flattened(&key, "ES256", numeric_url, b"{}")),
        ProblemKind::Malformed
    );
    let crit = json!({"nonce": NONCE, "url": URL, "jwk": jwk_of(&key), "crit": ["b64"]});
    assert_eq!(
        err_kind(&sign_flattened(&key, "ES256", crit, b"{}")),
        ProblemKind::Malformed
    );
}

#[test]
fn only_flattened_serialization() {
    let key = p256();
    let good = sign_flattened(&key, "ES256", jwk_header(&key), b"{}");
    for body in [
        with_member(&good, "header", json!({"kid": "x"})),
        with_member(&good, "signatures", json!([])),
        with_member(&good, "extra", json!(1)),
        with_member(&good, "payload", json!("e30=")),
        with_member(&good, "signature", json!("!!")),
        with_member(&good, "protected", json!(URL_SAFE_NO_PAD.encode("[1]"))),
        with_member(&good, "payload", json!(null)),
        "not json".to_owned(),
        "[]".to_owned(),
        r#"{"payload":"","signature":""}"#.to_owned(),
        "a.b.c".to_owned(),
    ] {
        assert_eq!(err_kind(&body), ProblemKind::Malformed, "{body}");
    }
}

#[test]
fn account_key_policy() {
    // A 1024-bit key is not even a JWK Kiln reads (the `pkix` RSA rule).
    let rsa1024 = PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap();
    assert_eq!(
        Jwk::from_public_key(&rsa1024).unwrap_err().kind,
        ProblemKind::BadPublicKey
    );
    for key in [p256(), p384(), rsa2048(), ed25519()] {
        check_account_key(&Jwk::from_public_key(&key).unwrap()).unwrap();
    }
}

const ACCOUNT: &str = "https://ca.test/acme/acct/7";
const KEY_CHANGE: &str = "https://ca.test/acme/key-change";

fn inner_jws(new: &PKey<Private>, old: &PKey<Private>, url: &str, account: &str) -> String {
    sign_flattened(
        new,
        alg_for(new),
        json!({"url": url, "jwk": jwk_of(new)}),
        json!({"account": account, "oldKey": jwk_of(old)})
            .to_string()
            .as_bytes(),
    )
}

#[test]
fn key_change_happy_path() {
    let (old, new) = (p384(), p256());
    let old_jwk = Jwk::from_public_key(&old).unwrap();
    let inner = inner_jws(&new, &old, KEY_CHANGE, ACCOUNT);
    let got = verify_key_change(inner.as_bytes(), KEY_CHANGE, ACCOUNT, &old_jwk).unwrap();
    assert_eq!(got, Jwk::from_public_key(&new).unwrap());
}

#[test]
fn key_change_failures() {
    let (old, new) = (p384(), p256());
    let old_jwk = Jwk::from_public_key(&old).unwrap();
    let check = |inner: &str| {
        verify_key_change(inner.as_bytes(), KEY_CHANGE, ACCOUNT, &old_jwk).unwrap_err()
    };

    let wrong_url = check(&inner_jws(
        &new,
        &old,
        "https://ca.test/acme/other",
        ACCOUNT,
    ));
    assert_eq!(wrong_url.kind, ProblemKind::Malformed);
    assert!(wrong_url.detail.contains("url"), "{}", wrong_url.detail);

    let wrong_account = check(&inner_jws(
        &new,
        &old,
        KEY_CHANGE,
        "https://ca.test/acme/acct/8",
    ));
    assert_eq!(wrong_account.kind, ProblemKind::Unauthorized);

    let wrong_old = check(&inner_jws(&new, &p384(), KEY_CHANGE, ACCOUNT));
    assert_eq!(wrong_old.kind, ProblemKind::Unauthorized);
    assert!(wrong_old.detail.contains("oldKey"), "{}", wrong_old.detail);

    let same_key = check(&inner_jws(&old, &old, KEY_CHANGE, ACCOUNT));
    assert_eq!(same_key.kind, ProblemKind::Malformed);
    assert!(same_key.detail.contains("same"), "{}", same_key.detail);

    let with_nonce = sign_flattened(
        &new,
        "ES256",
        json!({"url": KEY_CHANGE, "jwk": jwk_of(&new), "nonce": NONCE}),
        b"{}",
    );
    let err = check(&with_nonce);
    assert_eq!(err.kind, ProblemKind::Malformed);
    assert!(err.detail.contains("nonce"), "{}", err.detail);

    let by_kid = sign_flattened(
        &new,
        "ES256",
        json!({"url": KEY_CHANGE, "kid": ACCOUNT}),
        b"{}",
    );
    let err = check(&by_kid);
    assert_eq!(err.kind, ProblemKind::Malformed);
    assert!(err.detail.contains("not kid"), "{}", err.detail);

    let rsa1024 = PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap();
    let weak = sign_flattened(
        &rsa1024,
        "RS256",
        json!({"url": KEY_CHANGE, "jwk": jwk_of(&rsa1024)}),
        json!({"account": ACCOUNT, "oldKey": jwk_of(&old)})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(check(&weak).kind, ProblemKind::BadPublicKey);
}
