//! Request authentication, RFC 8555 §6.2–6.5: parsing and verifying the
//! flattened JWS every ACME POST carries, plus the nested keyChange JWS
//! (§7.3.5). Pure: nonce redemption, URL matching against the request and
//! account lookup by `kid` belong to the caller.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::{Problem, ProblemKind};
use openssl::bn::BigNum;
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::sign::{Signer, Verifier};
use serde_json::{Map, Value, json};

pub use crate::jwk::{Jwk, KeyType};

/// The `alg` values Kiln accepts. The HTTP layer should list these in the
/// `algorithms` member of every badSignatureAlgorithm problem (§6.2).
pub const SUPPORTED_ALGS: &[&str] = &["ES256", "ES384", "RS256", "EdDSA"];

/// Account key policy for RSA (§7.3: the server may refuse weak keys): the
/// floor every RSA key has (`pkix::RSA_BITS`), and a lower ceiling.
const ACCOUNT_RSA_BITS: std::ops::RangeInclusive<u32> = *pkix::RSA_BITS.start()..=4096;

fn malformed(detail: impl Into<String>) -> Problem {
    Problem::new(ProblemKind::Malformed, detail)
}

/// Header values are attacker-controlled; keep problem details short.
fn shown(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// badSignatureAlgorithm for `alg`. `Problem` has no extension members, so
/// the HTTP layer adds `"algorithms": SUPPORTED_ALGS` itself for this kind.
pub fn unsupported_alg_problem(alg: &str) -> Problem {
    Problem::new(
        ProblemKind::BadSignatureAlgorithm,
        format!(
            "alg {} is not supported; use one of {}",
            shown(alg),
            SUPPORTED_ALGS.join(", ")
        ),
    )
}

/// How the request names its key (§6.2): a `jwk` for newAccount and
/// revocation by certificate key, a `kid` (account URL) otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRef {
    Jwk(Jwk),
    Kid(String),
}

/// The checked protected header.
#[derive(Clone, Debug)]
pub struct Protected {
    pub alg: String,
    /// Empty only for the inner keyChange JWS, which must not carry one.
    pub nonce: String,
    pub url: String,
    pub key: KeyRef,
    /// The whole header as sent, for anything else a handler wants to read.
    pub raw: Map<String, Value>,
}

impl Protected {
    /// §6.4: the `url` header must be the URL the request was sent to.
    pub fn check_url(&self, request_url: &str) -> Result<(), Problem> {
        if self.url == request_url {
            Ok(())
        } else {
            Err(Problem::new(
                ProblemKind::Unauthorized,
                format!(
                    "protected header url {} does not match the request URL {request_url}",
                    shown(&self.url)
                ),
            ))
        }
    }
}

/// A parsed, not yet verified, flattened JWS.
#[derive(Clone, Debug)]
pub struct ParsedJws {
    pub protected: Protected,
    protected_b64: String,
    payload_b64: String,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl ParsedJws {
    /// POST-as-GET (§6.3) has the empty string as payload.
    pub fn is_post_as_get(&self) -> bool {
        self.payload_b64.is_empty()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum NonceRule {
    Required,
    /// The inner keyChange JWS (§7.3.5).
    Forbidden,
}

/// Parses a flattened-JSON JWS, the only serialization ACME allows (§6.2).
pub fn parse(body: &[u8]) -> Result<ParsedJws, Problem> {
    parse_with(body, NonceRule::Required)
}

fn b64_member<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, Problem> {
    obj.get(name)
        .ok_or_else(|| malformed(format!("JWS has no \"{name}\" member")))?
        .as_str()
        .ok_or_else(|| malformed(format!("JWS member \"{name}\" must be a string")))
}

fn decode(text: &str, what: &str) -> Result<Vec<u8>, Problem> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| malformed(format!("{what} is not base64url without padding")))
}

fn header_str<'a>(header: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, Problem> {
    match header.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(malformed(format!(
            "protected header member \"{name}\" must be a string"
        ))),
    }
}

fn parse_with(body: &[u8], nonce_rule: NonceRule) -> Result<ParsedJws, Problem> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("request body is not JSON: {e}")))?;
    let Value::Object(outer) = value else {
        return Err(malformed(
            "request body must be a flattened JWS: a JSON object with protected, payload and signature",
        ));
    };
    if outer.contains_key("signatures") {
        return Err(malformed(
            "the general JWS serialization (\"signatures\") is not allowed; use the flattened JSON serialization",
        ));
    }
    if outer.contains_key("header") {
        return Err(malformed(
            "an unprotected JWS header (\"header\") is not allowed; put every header parameter in \"protected\"",
        ));
    }
    if let Some(extra) = outer
        .keys()
        .find(|k| !matches!(k.as_str(), "protected" | "payload" | "signature"))
    {
        return Err(malformed(format!(
            "unexpected JWS member \"{}\"; a flattened JWS has only protected, payload and signature",
            shown(extra)
        )));
    }
    let protected_b64 = b64_member(&outer, "protected")?;
    let payload_b64 = b64_member(&outer, "payload")?;
    let signature_b64 = b64_member(&outer, "signature")?;
    let header_bytes = decode(protected_b64, "the protected header")?;
    let payload = decode(payload_b64, "the payload")?;
    let signature = decode(signature_b64, "the signature")?;
    let header: Map<String, Value> = match serde_json::from_slice(&header_bytes) {
        Ok(Value::Object(map)) => map,
        _ => return Err(malformed("the protected header is not a JSON object")),
    };

    let alg =
        header_str(&header, "alg")?.ok_or_else(|| malformed("protected header has no alg"))?;
    if !SUPPORTED_ALGS.contains(&alg) {
        return Err(unsupported_alg_problem(alg));
    }
    // RFC 7515 §4.1.11: unknown critical extensions must be refused; we know none.
    if header.contains_key("crit") {
        return Err(malformed(
            "the crit header parameter is not supported (no JWS extensions are)",
        ));
    }
    let key = match (header.get("jwk"), header_str(&header, "kid")?) {
        (Some(_), Some(_)) => {
            return Err(malformed(
                "protected header has both jwk and kid; use jwk only for newAccount and revokeCert signed by the certificate key, kid otherwise",
            ));
        }
        (None, None) => return Err(malformed("protected header has neither jwk nor kid")),
        (Some(jwk), None) => KeyRef::Jwk(Jwk::from_value(jwk)?),
        (None, Some("")) => return Err(malformed("protected header kid is empty")),
        (None, Some(kid)) => KeyRef::Kid(kid.to_owned()),
    };
    let nonce = match (header_str(&header, "nonce")?, nonce_rule) {
        (None | Some(""), NonceRule::Required) => {
            return Err(Problem::new(
                ProblemKind::BadNonce,
                "protected header has no nonce; get one with HEAD newNonce",
            ));
        }
        (Some(nonce), NonceRule::Required) => {
            // §6.5.2: a nonce that is not base64url is malformed, not bad.
            decode(nonce, "the nonce")?;
            nonce.to_owned()
        }
        (None, NonceRule::Forbidden) => String::new(),
        (Some(_), NonceRule::Forbidden) => {
            return Err(malformed("protected header must not have a nonce"));
        }
    };
    let url = header_str(&header, "url")?
        .ok_or_else(|| malformed("protected header has no url"))?
        .to_owned();
    let alg = alg.to_owned();

    Ok(ParsedJws {
        protected: Protected {
            alg,
            nonce,
            url,
            key,
            raw: header,
        },
        protected_b64: protected_b64.to_owned(),
        payload_b64: payload_b64.to_owned(),
        payload,
        signature,
    })
}

/// Checks that `alg` is the one algorithm Kiln pairs with the key's type.
fn check_alg_fits(alg: &str, key: &Jwk) -> Result<(), Problem> {
    let expected = match key.key_type() {
        KeyType::P256 => "ES256",
        KeyType::P384 => "ES384",
        KeyType::Ed25519 => "EdDSA",
        // No RSA key under 2048 bits is a Jwk (`pkix::rsa_key_allowed`).
        KeyType::Rsa { .. } => "RS256",
    };
    if !SUPPORTED_ALGS.contains(&alg) {
        return Err(unsupported_alg_problem(alg));
    }
    if alg != expected {
        return Err(Problem::new(
            ProblemKind::BadSignatureAlgorithm,
            format!(
                "alg {alg} does not fit the {} key; sign with {expected}",
                key.key_type()
            ),
        ));
    }
    Ok(())
}

fn signature_ok(alg: &str, key: &Jwk, input: &[u8], signature: &[u8]) -> bool {
    let pkey = key.public_key();
    match alg {
        "ES256" | "ES384" => {
            let (half, digest) = if alg == "ES256" {
                (32, openssl::sha::sha256(input).to_vec())
            } else {
                (48, openssl::sha::sha384(input).to_vec())
            };
            // JWS ECDSA signatures are raw r || s (RFC 7518 §3.4), not DER.
            if signature.len() != 2 * half {
                return false;
            }
            let (r, s) = signature.split_at(half);
            let verified = (|| {
                let sig = EcdsaSig::from_private_components(
                    BigNum::from_slice(r)?,
                    BigNum::from_slice(s)?,
                )?;
                sig.verify(&digest, &*pkey.ec_key()?)
            })();
            // ECDSA_do_verify queues an error for an out-of-range r or s and
            // the binding leaves it there; a stale entry on this thread's
            // queue would make the next TLS read or write fail.
            drop(openssl::error::ErrorStack::get());
            verified.unwrap_or(false)
        }
        "RS256" => Verifier::new(MessageDigest::sha256(), pkey)
            .and_then(|mut v| {
                v.update(input)?;
                v.verify(signature)
            })
            .unwrap_or(false),
        "EdDSA" => Verifier::new_without_digest(pkey)
            .and_then(|mut v| v.verify_oneshot(signature, input))
            .unwrap_or(false),
        _ => false,
    }
}

/// Verifies `jws` with `key` (the `jwk` header or the account's stored key)
/// and returns the payload, empty for POST-as-GET.
pub fn verify(jws: &ParsedJws, key: &Jwk) -> Result<Vec<u8>, Problem> {
    let alg = jws.protected.alg.as_str();
    check_alg_fits(alg, key)?;
    let input = format!("{}.{}", jws.protected_b64, jws.payload_b64);
    if !signature_ok(alg, key, input.as_bytes(), &jws.signature) {
        // RFC 8555 has no better type than malformed for this (Boulder agrees).
        return Err(malformed("JWS signature is invalid"));
    }
    Ok(jws.payload.clone())
}

/// Account key policy: RSA 2048–4096 bits, EC P-256/P-384 or Ed25519.
pub fn check_account_key(key: &Jwk) -> Result<(), Problem> {
    match key.key_type() {
        KeyType::Rsa { bits } if !ACCOUNT_RSA_BITS.contains(&bits) => Err(Problem::new(
            ProblemKind::BadPublicKey,
            format!(
                "RSA account keys must have {} to {} bits; this one has {bits}",
                ACCOUNT_RSA_BITS.start(),
                ACCOUNT_RSA_BITS.end()
            ),
        )),
        KeyType::Rsa { .. } | KeyType::P256 | KeyType::P384 | KeyType::Ed25519 => Ok(()),
    }
}

/// keyChange (§7.3.5). `inner_body` is the verified outer payload, `outer_url`
/// the outer `url` and `account_url` its `kid`; `old_key` is the account's
/// current key. Returns the new key. The caller must still refuse a new key
/// that another account already uses (409 Conflict).
pub fn verify_key_change(
    inner_body: &[u8],
    outer_url: &str,
    account_url: &str,
    old_key: &Jwk,
) -> Result<Jwk, Problem> {
    let inner_problem = |p: Problem| Problem {
        detail: format!("keyChange inner JWS: {}", p.detail),
        ..p
    };
    let inner = parse_with(inner_body, NonceRule::Forbidden).map_err(inner_problem)?;
    let KeyRef::Jwk(new_key) = &inner.protected.key else {
        return Err(malformed(
            "keyChange inner JWS must carry the new key as jwk, not kid",
        ));
    };
    let payload = verify(&inner, new_key).map_err(inner_problem)?;
    if inner.protected.url != outer_url {
        return Err(malformed(format!(
            "keyChange inner JWS url {} differs from the outer JWS url {outer_url}",
            shown(&inner.protected.url)
        )));
    }
    let Ok(Value::Object(change)) = serde_json::from_slice::<Value>(&payload) else {
        return Err(malformed(
            "keyChange inner payload must be a JSON object with account and oldKey",
        ));
    };
    let account = change
        .get("account")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("keyChange inner payload has no account string"))?;
    let old_key_value = change
        .get("oldKey")
        .ok_or_else(|| malformed("keyChange inner payload has no oldKey"))?;
    if account != account_url {
        return Err(Problem::new(
            ProblemKind::Unauthorized,
            "keyChange account is not the account that signed the request",
        ));
    }
    let claimed_old = Jwk::from_value(old_key_value).map_err(|p| Problem {
        detail: format!("keyChange oldKey: {}", p.detail),
        ..p
    })?;
    if claimed_old.thumbprint() != old_key.thumbprint() {
        return Err(Problem::new(
            ProblemKind::Unauthorized,
            "keyChange oldKey is not the account's current key",
        ));
    }
    if new_key.thumbprint() == old_key.thumbprint() {
        return Err(malformed(
            "keyChange new key is the same as the account's current key",
        ));
    }
    check_account_key(new_key)?;
    Ok(new_key.clone())
}

/// Builds a flattened JWS, for tests and black-box clients. The header is
/// `{"alg": alg}` plus the members of `protected_extra` (nonce, url, jwk or
/// kid; they may override alg). The signature always uses the key's own
/// algorithm (ES256 for P-256, ES384 for P-384, RS256 for RSA, EdDSA for
/// Ed25519) whatever `alg` says, so callers can forge mismatched headers.
///
/// # Panics
/// On a key of another type, or a `protected_extra` that is neither an
/// object nor null: this is a test helper for trusted input.
pub fn sign_flattened(
    key: &PKey<Private>,
    alg: &str,
    protected_extra: Value,
    payload: &[u8],
) -> String {
    let mut header = Map::new();
    header.insert("alg".into(), alg.into());
    match protected_extra {
        Value::Object(extra) => header.extend(extra),
        Value::Null => {}
        other => panic!("protected_extra must be a JSON object, got {other}"),
    }
    let protected_b64 = URL_SAFE_NO_PAD.encode(Value::Object(header).to_string());
    let payload_b64 = URL_SAFE_NO_PAD.encode(payload);
    let input = format!("{protected_b64}.{payload_b64}");
    let signature = sign_bytes(key, input.as_bytes()).expect("signing with a test key failed");
    json!({
        "protected": protected_b64,
        "payload": payload_b64,
        "signature": URL_SAFE_NO_PAD.encode(signature),
    })
    .to_string()
}

fn sign_bytes(key: &PKey<Private>, input: &[u8]) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    match key.id() {
        Id::RSA => {
            let mut signer = Signer::new(MessageDigest::sha256(), key)?;
            signer.update(input)?;
            signer.sign_to_vec()
        }
        Id::EC => {
            let ec = key.ec_key()?;
            let (half, digest) = match ec.group().curve_name() {
                Some(Nid::X9_62_PRIME256V1) => (32, openssl::sha::sha256(input).to_vec()),
                Some(Nid::SECP384R1) => (48, openssl::sha::sha384(input).to_vec()),
                other => panic!("sign_flattened: unsupported EC curve {other:?}"),
            };
            let sig = EcdsaSig::sign(&digest, &ec)?;
            Ok([sig.r().to_vec_padded(half)?, sig.s().to_vec_padded(half)?].concat())
        }
        Id::ED25519 => Signer::new_without_digest(key)?.sign_oneshot_to_vec(input),
        other => panic!("sign_flattened: unsupported key type {other:?}"),
    }
}

/// The public JWK of `key`, as a JSON object for a `jwk` header. Any RSA
/// key, including those Kiln refuses to read: tests send them on purpose.
///
/// # Panics
/// On other key types Kiln does not support (see [`Jwk::from_public_key`]).
pub fn jwk_of(key: &PKey<Private>) -> Value {
    if let Ok(rsa) = key.rsa() {
        let b64 = |n: &openssl::bn::BigNumRef| URL_SAFE_NO_PAD.encode(n.to_vec());
        return json!({"e": b64(rsa.e()), "kty": "RSA", "n": b64(rsa.n())});
    }
    Jwk::from_public_key(key)
        .expect("jwk_of: unsupported key type")
        .to_value()
}

#[cfg(test)]
mod tests;
