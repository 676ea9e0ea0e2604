//! Public JSON Web Keys (RFC 7517/7518) as ACME accounts use them: parsing
//! from a JWS header or from storage, conversion to OpenSSL keys, and the
//! RFC 7638 thumbprint that key authorizations are built from.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::{Problem, ProblemKind};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, Id, PKey, PKeyRef, Public};
use openssl::rsa::Rsa;
use serde_json::Value;

/// Members that only a private (or symmetric) JWK has.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// What kind of key a [`Jwk`] holds; decides which `alg` may be used with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    P256,
    P384,
    Rsa { bits: u32 },
    Ed25519,
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyType::P256 => f.write_str("P-256"),
            KeyType::P384 => f.write_str("P-384"),
            KeyType::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyType::Ed25519 => f.write_str("Ed25519"),
        }
    }
}

/// The public members of a supported key, as minimal big-endian octets.
#[derive(Clone, PartialEq, Eq)]
enum Params {
    Ec { p384: bool, x: Vec<u8>, y: Vec<u8> },
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ed25519 { x: Vec<u8> },
}

/// A validated public key: EC P-256/P-384, RSA or Ed25519.
///
/// Construction checks the key fully (point on curve, sane RSA numbers), so
/// every accessor is infallible.
#[derive(Clone)]
pub struct Jwk {
    params: Params,
    key_type: KeyType,
    pkey: PKey<Public>,
    spki_der: Vec<u8>,
}

impl PartialEq for Jwk {
    fn eq(&self, other: &Self) -> bool {
        self.params == other.params
    }
}

impl Eq for Jwk {}

impl std::fmt::Debug for Jwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Jwk({})", self.to_json())
    }
}

fn malformed(detail: impl Into<String>) -> Problem {
    Problem::new(ProblemKind::Malformed, detail)
}

fn bad_key(detail: impl Into<String>) -> Problem {
    Problem::new(ProblemKind::BadPublicKey, detail)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A required base64url member of the JWK object.
fn member(obj: &serde_json::Map<String, Value>, name: &str) -> Result<Vec<u8>, Problem> {
    let text = obj
        .get(name)
        .ok_or_else(|| malformed(format!("jwk has no \"{name}\" member")))?
        .as_str()
        .ok_or_else(|| malformed(format!("jwk member \"{name}\" must be a string")))?;
    URL_SAFE_NO_PAD.decode(text).map_err(|_| {
        malformed(format!(
            "jwk member \"{name}\" is not base64url without padding"
        ))
    })
}

fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    bytes.drain(..zeros);
    bytes
}

impl Jwk {
    /// Parses a public JWK, e.g. the `jwk` protected header parameter.
    pub fn from_value(value: &Value) -> Result<Jwk, Problem> {
        let obj = value
            .as_object()
            .ok_or_else(|| malformed("jwk must be a JSON object"))?;
        if let Some(name) = PRIVATE_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
            return Err(malformed(format!(
                "jwk contains the private key member \"{name}\"; send only the public key"
            )));
        }
        let kty = obj
            .get("kty")
            .ok_or_else(|| malformed("jwk has no \"kty\" member"))?
            .as_str()
            .ok_or_else(|| malformed("jwk member \"kty\" must be a string"))?;
        let crv = || {
            obj.get("crv")
                .ok_or_else(|| malformed(format!("{kty} jwk has no \"crv\" member")))?
                .as_str()
                .ok_or_else(|| malformed("jwk member \"crv\" must be a string"))
        };
        let params = match kty {
            "EC" => {
                let p384 = match crv()? {
                    "P-256" => false,
                    "P-384" => true,
                    other => {
                        return Err(bad_key(format!(
                            "EC curve {other} is not supported; use P-256 or P-384"
                        )));
                    }
                };
                Params::Ec {
                    p384,
                    x: member(obj, "x")?,
                    y: member(obj, "y")?,
                }
            }
            // RFC 7518 wants minimal octets; go-jose (Boulder) normalises
            // rather than rejects, and so do we, so thumbprints agree with it.
            "RSA" => Params::Rsa {
                n: strip_leading_zeros(member(obj, "n")?),
                e: strip_leading_zeros(member(obj, "e")?),
            },
            "OKP" => match crv()? {
                "Ed25519" => Params::Ed25519 {
                    x: member(obj, "x")?,
                },
                other => {
                    return Err(bad_key(format!(
                        "OKP curve {other} is not supported; use Ed25519"
                    )));
                }
            },
            other => {
                return Err(bad_key(format!(
                    "key type {other:?} is not supported; use EC (P-256, P-384), RSA or OKP (Ed25519)"
                )));
            }
        };
        Jwk::from_params(params)
    }

    /// Parses a JWK stored with [`Jwk::to_json`] (or any public JWK text).
    pub fn from_json(text: &str) -> Result<Jwk, Problem> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| malformed(format!("jwk is not JSON: {e}")))?;
        Jwk::from_value(&value)
    }

    /// The JWK of an OpenSSL key (only its public half is used).
    pub fn from_public_key<T: HasPublic>(key: &PKeyRef<T>) -> Result<Jwk, Problem> {
        let unsupported = || bad_key("key type is not supported; use P-256, P-384, RSA or Ed25519");
        let params = match key.id() {
            Id::RSA => {
                let rsa = key.rsa().map_err(|_| unsupported())?;
                Params::Rsa {
                    n: rsa.n().to_vec(),
                    e: rsa.e().to_vec(),
                }
            }
            Id::EC => {
                let ec = key.ec_key().map_err(|_| unsupported())?;
                let p384 = match ec.group().curve_name() {
                    Some(Nid::X9_62_PRIME256V1) => false,
                    Some(Nid::SECP384R1) => true,
                    _ => return Err(unsupported()),
                };
                let len = if p384 { 48 } else { 32 };
                let mut ctx = openssl::bn::BigNumContext::new().map_err(|_| Problem::internal())?;
                let (mut x, mut y) = (
                    BigNum::new().map_err(|_| Problem::internal())?,
                    BigNum::new().map_err(|_| Problem::internal())?,
                );
                ec.public_key()
                    .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)
                    .map_err(|_| unsupported())?;
                Params::Ec {
                    p384,
                    x: x.to_vec_padded(len).map_err(|_| unsupported())?,
                    y: y.to_vec_padded(len).map_err(|_| unsupported())?,
                }
            }
            Id::ED25519 => Params::Ed25519 {
                x: key.raw_public_key().map_err(|_| unsupported())?,
            },
            _ => return Err(unsupported()),
        };
        Jwk::from_params(params)
    }

    fn from_params(params: Params) -> Result<Jwk, Problem> {
        let (pkey, key_type) = match &params {
            Params::Ec { p384, x, y } => {
                let (nid, len, name, key_type) = if *p384 {
                    (Nid::SECP384R1, 48, "P-384", KeyType::P384)
                } else {
                    (Nid::X9_62_PRIME256V1, 32, "P-256", KeyType::P256)
                };
                // RFC 7518 §6.2.1.2: coordinates are always the full field size.
                if x.len() != len || y.len() != len {
                    return Err(malformed(format!(
                        "{name} jwk coordinates x and y must be {len} octets each"
                    )));
                }
                let group = EcGroup::from_curve_name(nid).map_err(|_| Problem::internal())?;
                let (x, y) = (
                    BigNum::from_slice(x).map_err(|_| Problem::internal())?,
                    BigNum::from_slice(y).map_err(|_| Problem::internal())?,
                );
                // This also checks that the point lies on the curve.
                let ec = EcKey::from_public_key_affine_coordinates(&group, &x, &y)
                    .map_err(|_| bad_key(format!("jwk point is not on curve {name}")))?;
                (PKey::from_ec_key(ec), key_type)
            }
            Params::Rsa { n, e } => {
                // The same rule as certificate keys (`pkix`): e = 1 or 3, a
                // 1024-bit or a 16384-bit modulus make no account.
                pkix::rsa_key_allowed(n, e)
                    .map_err(|why| bad_key(format!("the account key is {why}")))?;
                let n = BigNum::from_slice(n).map_err(|_| Problem::internal())?;
                let bits = n.num_bits().unsigned_abs();
                let rsa = Rsa::from_public_components(
                    n,
                    BigNum::from_slice(e).map_err(|_| Problem::internal())?,
                )
                .map_err(|_| bad_key("RSA key is invalid"))?;
                (PKey::from_rsa(rsa), KeyType::Rsa { bits })
            }
            Params::Ed25519 { x } => {
                if x.len() != 32 {
                    return Err(malformed("Ed25519 jwk member x must be 32 octets"));
                }
                let pkey = PKey::public_key_from_raw_bytes(x, Id::ED25519)
                    .map_err(|_| bad_key("Ed25519 key is invalid"))?;
                (Ok(pkey), KeyType::Ed25519)
            }
        };
        let pkey = pkey.map_err(|_| Problem::internal())?;
        let spki_der = pkey.public_key_to_der().map_err(|_| Problem::internal())?;
        Ok(Jwk {
            params,
            key_type,
            pkey,
            spki_der,
        })
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// An RSA key's modulus (minimal big-endian octets), e.g. for the
    /// Debian weak-key lists; `None` for other key types.
    pub fn rsa_modulus(&self) -> Option<&[u8]> {
        match &self.params {
            Params::Rsa { n, .. } => Some(n),
            _ => None,
        }
    }

    /// Refuses (`badPublicKey`) an RSA key on one of the Debian weak-key
    /// lists the operator configured (CVE-2008-0166, BR 6.1.1.3): its
    /// private key is public knowledge. For new account keys (newAccount,
    /// keyChange), not for every JWS: a certificate's weak key may still
    /// sign its revocation. `what` names the key in the detail.
    pub fn refuse_if_debian_weak(
        &self,
        weak_keys: &pkix::DebianWeakKeys,
        what: &str,
    ) -> Result<(), Problem> {
        match self.rsa_modulus() {
            Some(n) if weak_keys.contains(n) => Err(bad_key(format!(
                "{what} is one of the predictable RSA keys of Debian's OpenSSL bug \
                 (CVE-2008-0166), on this CA's weak-key list; generate a new key"
            ))),
            _ => Ok(()),
        }
    }

    pub fn public_key(&self) -> &PKey<Public> {
        &self.pkey
    }

    /// DER SubjectPublicKeyInfo, e.g. to compare with a CSR's key.
    pub fn public_key_spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The RFC 7638 canonical form: only the required members, in
    /// lexicographic order, no whitespace. Also the storage format.
    pub fn to_json(&self) -> String {
        // Written by hand so no serde_json feature (preserve_order) can change
        // member order; values are base64url, so nothing needs escaping.
        match &self.params {
            Params::Ec { p384, x, y } => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                if *p384 { "P-384" } else { "P-256" },
                b64(x),
                b64(y)
            ),
            Params::Rsa { n, e } => {
                format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64(e), b64(n))
            }
            Params::Ed25519 { x } => {
                format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(x))
            }
        }
    }

    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.to_json()).unwrap_or(Value::Null)
    }

    /// RFC 7638 thumbprint: base64url(SHA-256(canonical JSON)), no padding.
    pub fn thumbprint(&self) -> String {
        b64(&openssl::sha::sha256(self.to_json().as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ec::EcGroup;
    use serde_json::json;

    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    #[test]
    fn rfc7638_thumbprint_vector() {
        let jwk = Jwk::from_value(&json!({
            "kty": "RSA",
            "n": RFC7638_N,
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29",
        }))
        .unwrap();
        assert_eq!(
            jwk.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        assert_eq!(jwk.key_type(), KeyType::Rsa { bits: 2048 });
    }

    #[test]
    fn leading_zero_octets_are_normalised() {
        let n = URL_SAFE_NO_PAD.decode(RFC7638_N).unwrap();
        let padded = b64(&[&[0u8][..], &n].concat());
        let jwk = Jwk::from_value(&json!({"kty": "RSA", "n": padded, "e": "AAEAAQ"})).unwrap();
        assert_eq!(
            jwk.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn storage_round_trip_for_every_key_type() {
        let keys = [
            PKey::from_ec_key(
                EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap(),
            )
            .unwrap(),
            PKey::from_ec_key(
                EcKey::generate(&EcGroup::from_curve_name(Nid::SECP384R1).unwrap()).unwrap(),
            )
            .unwrap(),
            PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
            PKey::generate_ed25519().unwrap(),
        ];
        for key in keys {
            let jwk = Jwk::from_public_key(&key).unwrap();
            let stored = jwk.to_json();
            let back = Jwk::from_json(&stored).unwrap();
            assert_eq!(back, jwk);
            assert_eq!(back.to_json(), stored);
            assert_eq!(back.thumbprint(), jwk.thumbprint());
            assert_eq!(
                back.public_key_spki_der(),
                key.public_key_to_der().unwrap().as_slice()
            );
            assert!(back.public_key().public_eq(&key));
        }
    }

    #[test]
    fn a_debian_weak_key_is_refused_when_listed() {
        let rsa_jwk = || {
            let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
            Jwk::from_public_key(&PKey::from_rsa(rsa).unwrap()).unwrap()
        };
        let (weak, other) = (rsa_jwk(), rsa_jwk());
        let mut list = pkix::DebianWeakKeys::default();
        let line = pkix::debian_weak_keys::fingerprint(weak.rsa_modulus().unwrap());
        list.add_list(&line, std::path::Path::new("list")).unwrap();
        let err = weak
            .refuse_if_debian_weak(&list, "this account key")
            .unwrap_err();
        assert_eq!(err.kind, ProblemKind::BadPublicKey);
        assert!(
            err.detail.starts_with("this account key is"),
            "{}",
            err.detail
        );
        assert!(err.detail.contains("CVE-2008-0166"), "{}", err.detail);
        other.refuse_if_debian_weak(&list, "key").unwrap();
        let none = pkix::DebianWeakKeys::default();
        weak.refuse_if_debian_weak(&none, "key").unwrap();
        let ec = openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap(),
        )
        .unwrap();
        let ec = Jwk::from_public_key(&PKey::from_ec_key(ec).unwrap()).unwrap();
        assert_eq!(ec.rsa_modulus(), None);
        ec.refuse_if_debian_weak(&list, "key").unwrap();
    }

    #[test]
    fn refuses_private_and_unsupported_keys() {
        let cases = [
            (
                json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"}),
                ProblemKind::Malformed,
            ),
            (json!({"kty": "oct", "k": "AAAA"}), ProblemKind::Malformed),
            (
                json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}),
                ProblemKind::BadPublicKey,
            ),
            (
                json!({"kty": "OKP", "crv": "X25519", "x": "AA"}),
                ProblemKind::BadPublicKey,
            ),
            (json!({"kty": "DSA"}), ProblemKind::BadPublicKey),
            (json!({"crv": "P-256"}), ProblemKind::Malformed),
            (
                json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}),
                ProblemKind::Malformed,
            ),
            (
                json!({"kty": "EC", "crv": "P-256", "x": b64(&[1; 32]), "y": b64(&[1; 32])}),
                ProblemKind::BadPublicKey,
            ),
            (
                json!({"kty": "RSA", "n": RFC7638_N, "e": "AQAB="}),
                ProblemKind::Malformed,
            ),
            (
                json!({"kty": "RSA", "n": RFC7638_N, "e": "AQAA"}),
                ProblemKind::BadPublicKey,
            ),
            // e = 1 (signatures are the message itself) and e = 3.
            (
                json!({"kty": "RSA", "n": RFC7638_N, "e": "AQ"}),
                ProblemKind::BadPublicKey,
            ),
            (
                json!({"kty": "RSA", "n": RFC7638_N, "e": "Aw"}),
                ProblemKind::BadPublicKey,
            ),
            // A 1024-bit modulus.
            (
                json!({"kty": "RSA", "n": b64(&[0xff; 128]), "e": "AQAB"}),
                ProblemKind::BadPublicKey,
            ),
            (json!("not an object"), ProblemKind::Malformed),
        ];
        for (value, kind) in cases {
            let err = Jwk::from_value(&value).unwrap_err();
            assert_eq!(err.kind, kind, "{value}: {}", err.detail);
        }
    }
}
