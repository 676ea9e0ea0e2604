//! Public keys and signatures of X.509 structures, read without OpenSSL 3's
//! decoder.
//!
//! `d2i_PUBKEY` and `d2i_X509` go through OpenSSL 3.0's `OSSL_DECODER`
//! framework, which costs ~170–200 µs of CPU per call here (measured:
//! `PKey::public_key_from_der`, `X509::from_der`), more than the signature
//! they exist to check. Kiln parses with `x509-parser` (pure Rust, ~1 µs)
//! and builds keys from their components (`EC_KEY` from the point, RSA from
//! n and e: ~3 µs), then verifies with OpenSSL as before. Every parse here
//! is strict about trailing data; a structure that does not parse is an
//! error, never a panic.

#![forbid(unsafe_code)]

pub mod debian_weak_keys;
pub mod weak_rsa;

pub use debian_weak_keys::DebianWeakKeys;

use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::ecdsa::EcdsaSig;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, PKeyRef, Private, Public};
use openssl::rsa::Rsa;
use openssl::sign::{Signer, Verifier};
use std::sync::LazyLock;
use x509_parser::oid_registry::Oid;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ECDSA_WITH_SHA512,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PkixError {
    #[error("not a DER SubjectPublicKeyInfo")]
    BadSpki,
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    #[error("the key is invalid: {0}")]
    InvalidKey(String),
    #[error("unsupported signature algorithm {0}")]
    UnsupportedSignature(String),
    #[error("not a DER certificate")]
    BadCertificate,
}

// Building a group from its name costs ~12 µs; the curves Kiln accepts are
// built once.
static P256: LazyLock<EcGroup> =
    LazyLock::new(|| EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256"));
static P384: LazyLock<EcGroup> =
    LazyLock::new(|| EcGroup::from_curve_name(Nid::SECP384R1).expect("P-384"));

/// The EC curves Kiln accepts, for the api's CSR policy, the signer's leaf
/// key and key parsing here alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

impl Curve {
    /// The curve an EC SubjectPublicKeyInfo names, if Kiln accepts it;
    /// otherwise the named curve it does not accept (`None`: no named curve,
    /// e.g. explicit parameters).
    pub fn of<'a>(spki: &'a SubjectPublicKeyInfo<'_>) -> Result<Curve, Option<Oid<'a>>> {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        match curve {
            Some(oid) if oid == OID_EC_P256 => Ok(Curve::P256),
            Some(oid) if oid == OID_NIST_EC_P384 => Ok(Curve::P384),
            other => Err(other),
        }
    }

    /// Bytes of one coordinate.
    pub fn field_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    fn group(self) -> &'static EcGroup {
        match self {
            Curve::P256 => &P256,
            Curve::P384 => &P384,
        }
    }
}

/// The key of a DER SubjectPublicKeyInfo: EC on P-256 or P-384, RSA, or
/// Ed25519. Anything else is `UnsupportedKey`.
pub fn public_key_from_spki(spki_der: &[u8]) -> Result<PKey<Public>, PkixError> {
    let spki = match SubjectPublicKeyInfo::from_der(spki_der) {
        Ok(([], spki)) => spki,
        _ => return Err(PkixError::BadSpki),
    };
    public_key(&spki)
}

/// The one DER encoding of a key's SubjectPublicKeyInfo, as this module
/// rebuilds it (EC points uncompressed, named curves): what a key's digest
/// is taken of, so the same key in a CSR, a certificate or a JWK, in any
/// point encoding, has one digest.
pub fn canonical_spki_der(spki_der: &[u8]) -> Result<Vec<u8>, PkixError> {
    public_key_from_spki(spki_der)?
        .public_key_to_der()
        .map_err(|e| PkixError::InvalidKey(e.to_string()))
}

/// The key of an already parsed SubjectPublicKeyInfo.
pub fn public_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<PKey<Public>, PkixError> {
    let algorithm = &spki.algorithm.algorithm;
    let key_bytes = spki.subject_public_key.data.as_ref();
    let invalid = |e: openssl::error::ErrorStack| PkixError::InvalidKey(e.to_string());
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let group = Curve::of(spki)
            .map_err(|curve| {
                PkixError::UnsupportedKey(match curve {
                    Some(oid) => format!("EC curve {oid}"),
                    None => "EC key without a named curve".into(),
                })
            })?
            .group();
        let mut ctx = BigNumContext::new().map_err(invalid)?;
        // EC_POINT_oct2point refuses a point that is not on the curve; on
        // P-256 and P-384 (cofactor 1) that is the whole public-key check,
        // so EC_KEY_check_key's scalar multiplication (~40 us) adds nothing.
        let point = EcPoint::from_bytes(group, key_bytes, &mut ctx).map_err(invalid)?;
        // The point at infinity (a lone 0x00) decodes, but is no public key.
        if point.is_infinity(group) {
            return Err(PkixError::InvalidKey("EC point at infinity".into()));
        }
        let ec = EcKey::from_public_key(group, &point).map_err(invalid)?;
        PKey::from_ec_key(ec).map_err(invalid)
    } else if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let (n, e) = rsa_components(key_bytes)?;
        let rsa = Rsa::from_public_components(
            BigNum::from_slice(n).map_err(invalid)?,
            BigNum::from_slice(e).map_err(invalid)?,
        )
        .map_err(invalid)?;
        PKey::from_rsa(rsa).map_err(invalid)
    } else if *algorithm == OID_SIG_ED25519 {
        PKey::public_key_from_raw_bytes(key_bytes, Id::ED25519).map_err(invalid)
    } else {
        Err(PkixError::UnsupportedKey(format!("algorithm {algorithm}")))
    }
}

/// n and e of a DER RSAPublicKey, as unsigned big-endian bytes.
fn rsa_components(der: &[u8]) -> Result<(&[u8], &[u8]), PkixError> {
    use x509_parser::der_parser::ber::BerObjectContent;
    use x509_parser::der_parser::der::parse_der_sequence;
    let bad = || PkixError::InvalidKey("not a DER RSAPublicKey".into());
    let (rest, seq) = parse_der_sequence(der).map_err(|_| bad())?;
    if !rest.is_empty() {
        return Err(bad());
    }
    let BerObjectContent::Sequence(items) = &seq.content else {
        return Err(bad());
    };
    let [n, e] = items.as_slice() else {
        return Err(bad());
    };
    let n = n.as_slice().map_err(|_| bad())?;
    let e = e.as_slice().map_err(|_| bad())?;
    Ok((strip_leading_zeros(n), strip_leading_zeros(e)))
}

/// DER INTEGERs are signed: a leading zero only keeps them positive.
/// The RSA moduli Kiln accepts, in bits: at least 2048 and a multiple of 8
/// (BR 6.1.5); at most 8192, which keeps every verification cheap.
pub const RSA_BITS: std::ops::RangeInclusive<u32> = 2048..=8192;

/// Whether an RSA public key (big-endian `n` and `e`, leading zero octets
/// allowed) is one Kiln accepts, for certificates and accounts alike: a
/// modulus in [`RSA_BITS`], a multiple of 8 bits and odd, the public
/// exponent 65537 (BR 6.1.6; e = 3 or 1 is refused), and a modulus with
/// none of the known weaknesses of [`weak_rsa`] (BR 6.1.1.3). `Err` says
/// what the key is, for a problem document.
pub fn rsa_key_allowed(n: &[u8], e: &[u8]) -> Result<(), String> {
    rsa_shape_allowed(n, e)?;
    match weak_rsa::weakness(n) {
        Ok(None) => Ok(()),
        Ok(Some(why)) => Err(why.into()),
        Err(e) => Err(format!("RSA modulus that could not be checked: {e}")),
    }
}

/// The size and exponent rules alone (BR 6.1.5, 6.1.6).
fn rsa_shape_allowed(n: &[u8], e: &[u8]) -> Result<(), String> {
    let n = strip_leading_zeros(n);
    let bits = match n.first() {
        Some(top) => n.len() as u32 * 8 - top.leading_zeros(),
        None => 0,
    };
    if !RSA_BITS.contains(&bits) || bits % 8 != 0 {
        return Err(format!(
            "RSA with a {bits}-bit modulus; Kiln accepts {} to {} bits in multiples of 8",
            RSA_BITS.start(),
            RSA_BITS.end()
        ));
    }
    if n.last().is_some_and(|low| low & 1 == 0) {
        return Err("RSA with an even modulus".into());
    }
    if strip_leading_zeros(e) != [1, 0, 1] {
        return Err("RSA with a public exponent other than 65537".into());
    }
    Ok(())
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let zeros = b.iter().take_while(|&&x| x == 0).count();
    &b[zeros..]
}

/// The digest a signature algorithm uses, if Kiln accepts it; `None` for
/// Ed25519 (which hashes internally).
pub fn signature_digest(
    algorithm: &AlgorithmIdentifier<'_>,
) -> Result<Option<MessageDigest>, PkixError> {
    let oid = &algorithm.algorithm;
    Ok(Some(
        if *oid == OID_SIG_ECDSA_WITH_SHA256 || *oid == OID_PKCS1_SHA256WITHRSA {
            MessageDigest::sha256()
        } else if *oid == OID_SIG_ECDSA_WITH_SHA384 || *oid == OID_PKCS1_SHA384WITHRSA {
            MessageDigest::sha384()
        } else if *oid == OID_SIG_ECDSA_WITH_SHA512 || *oid == OID_PKCS1_SHA512WITHRSA {
            MessageDigest::sha512()
        } else if *oid == OID_SIG_ED25519 {
            return Ok(None);
        } else {
            return Err(PkixError::UnsupportedSignature(oid.to_id_string()));
        },
    ))
}

/// Whether `signature` (as in X.509: DER ECDSA-Sig-Value, PKCS#1 v1.5, or
/// raw Ed25519) over `signed` verifies under `key` with `algorithm`. An
/// algorithm that does not fit the key is `false`, not an error.
pub fn verify_signature(
    key: &PKeyRef<Public>,
    algorithm: &AlgorithmIdentifier<'_>,
    signed: &[u8],
    signature: &[u8],
) -> Result<bool, PkixError> {
    let digest = signature_digest(algorithm)?;
    let oid = &algorithm.algorithm;
    let ecdsa = [
        OID_SIG_ECDSA_WITH_SHA256,
        OID_SIG_ECDSA_WITH_SHA384,
        OID_SIG_ECDSA_WITH_SHA512,
    ];
    let rsa = [
        OID_PKCS1_SHA256WITHRSA,
        OID_PKCS1_SHA384WITHRSA,
        OID_PKCS1_SHA512WITHRSA,
    ];
    let fits = match key.id() {
        Id::EC => ecdsa.contains(oid),
        Id::RSA => rsa.contains(oid),
        Id::ED25519 => *oid == OID_SIG_ED25519,
        _ => false,
    };
    if !fits {
        return Ok(false);
    }
    Ok(verify_digest_signature(key, digest, signed, signature))
}

/// Whether `signature` (DER ECDSA-Sig-Value, PKCS#1 v1.5, or raw Ed25519
/// when `digest` is `None`) over `signed` verifies under `key`. The caller
/// has checked that the algorithm fits the key.
///
/// ECDSA goes through the `EC_KEY` API (`ECDSA_do_verify` over a digest
/// hashed here): OpenSSL 3's `EVP_DigestVerifyInit` fetches the digest and
/// signature algorithms from the provider on every call, which was ~40% of
/// each P-256 verification in the bench profiles. The curve arithmetic is
/// the same code either way.
pub fn verify_digest_signature(
    key: &PKeyRef<Public>,
    digest: Option<MessageDigest>,
    signed: &[u8],
    signature: &[u8],
) -> bool {
    let verified = (|| match (key.id(), digest) {
        (Id::EC, Some(md)) => {
            let sig = EcdsaSig::from_der(signature)?;
            // d2i accepts trailing bytes and BER lengths; EVP (and strict
            // verifiers such as BoringSSL) refuse anything but the DER
            // encoding of the parsed value, and so does this.
            if sig.to_der()? != signature {
                return Ok(false);
            }
            sig.verify(&digest_of(md, signed)?, &*key.ec_key()?)
        }
        (_, Some(md)) => Verifier::new(md, key)?.verify_oneshot(signature, signed),
        (_, None) => Verifier::new_without_digest(key)?.verify_oneshot(signature, signed),
    })()
    .unwrap_or(false);
    // A failed verification leaves its reason on this thread's OpenSSL error
    // queue; left there it would fail the next TLS read on the thread.
    drop(openssl::error::ErrorStack::get());
    verified
}

/// `key`'s signature over `data` with `digest`, as X.509 and CT carry it
/// (DER ECDSA-Sig-Value, or PKCS#1 v1.5). ECDSA through `ECDSA_do_sign`
/// for the reason given at [`verify_digest_signature`].
pub fn sign_with_digest(
    key: &PKeyRef<Private>,
    digest: MessageDigest,
    data: &[u8],
) -> Result<Vec<u8>, ErrorStack> {
    match key.id() {
        Id::EC => EcdsaSig::sign(&digest_of(digest, data)?, &*key.ec_key()?)?.to_der(),
        _ => Signer::new(digest, key)?.sign_oneshot_to_vec(data),
    }
}

/// `data` hashed with `md`; the SHA-2 functions directly, which skip the
/// provider fetch that `EVP_Digest` does.
fn digest_of(md: MessageDigest, data: &[u8]) -> Result<Vec<u8>, ErrorStack> {
    Ok(match md.type_() {
        Nid::SHA256 => openssl::sha::sha256(data).to_vec(),
        Nid::SHA384 => openssl::sha::sha384(data).to_vec(),
        Nid::SHA512 => openssl::sha::sha512(data).to_vec(),
        _ => openssl::hash::hash(md, data)?.to_vec(),
    })
}

/// Whether the DER certificate `cert_der` is signed by `issuer_key`.
pub fn certificate_signed_by(
    cert_der: &[u8],
    issuer_key: &PKeyRef<Public>,
) -> Result<bool, PkixError> {
    let cert = match x509_parser::parse_x509_certificate(cert_der) {
        Ok(([], cert)) => cert,
        _ => return Err(PkixError::BadCertificate),
    };
    verify_signature(
        issuer_key,
        &cert.signature_algorithm,
        cert.tbs_certificate.as_ref(),
        cert.signature_value.data.as_ref(),
    )
}

/// The public key of a DER certificate.
pub fn certificate_public_key(cert_der: &[u8]) -> Result<PKey<Public>, PkixError> {
    let cert = match x509_parser::parse_x509_certificate(cert_der) {
        Ok(([], cert)) => cert,
        _ => return Err(PkixError::BadCertificate),
    };
    public_key(cert.public_key())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::x509::{X509Builder, X509NameBuilder};

    fn ec(nid: Nid) -> PKey<Private> {
        PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(nid).unwrap()).unwrap())
            .unwrap()
    }

    fn cert(subject_key: &PKey<Private>, issuer_key: &PKey<Private>, md: MessageDigest) -> Vec<u8> {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, "pkix test")
            .unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(subject_key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.sign(issuer_key, md).unwrap();
        b.build().to_der().unwrap()
    }

    /// The same key as OpenSSL's own decoder reads, for every key type.
    #[test]
    fn keys_equal_what_openssl_decodes() {
        let keys = [
            ec(Nid::X9_62_PRIME256V1),
            ec(Nid::SECP384R1),
            PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
            PKey::generate_ed25519().unwrap(),
        ];
        for key in keys {
            let spki = key.public_key_to_der().unwrap();
            let ours = public_key_from_spki(&spki).unwrap();
            let openssl = PKey::public_key_from_der(&spki).unwrap();
            assert!(ours.public_eq(&openssl), "{:?}", key.id());
            assert_eq!(ours.public_key_to_der().unwrap(), spki);
        }
    }

    /// The EC_KEY shortcuts agree with OpenSSL's EVP interface both ways
    /// (each verifies the other's signatures), and refuse a wrong one.
    #[test]
    fn signatures_agree_with_evp() {
        let keys = [
            (ec(Nid::X9_62_PRIME256V1), MessageDigest::sha256()),
            (ec(Nid::SECP384R1), MessageDigest::sha384()),
            (
                PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
                MessageDigest::sha256(),
            ),
        ];
        for (key, md) in keys {
            let public = PKey::public_key_from_der(&key.public_key_to_der().unwrap()).unwrap();
            let data = b"to be signed";
            let ours = sign_with_digest(&key, md, data).unwrap();
            let mut evp = Verifier::new(md, &public).unwrap();
            assert!(evp.verify_oneshot(&ours, data).unwrap(), "{:?}", key.id());
            let theirs = Signer::new(md, &key)
                .unwrap()
                .sign_oneshot_to_vec(data)
                .unwrap();
            assert!(verify_digest_signature(&public, Some(md), data, &theirs));
            assert!(!verify_digest_signature(
                &public,
                Some(md),
                b"other data",
                &theirs
            ));
            assert!(!verify_digest_signature(
                &public,
                Some(md),
                data,
                b"\x30\x00"
            ));
            let trailing = [theirs.as_slice(), &[0]].concat();
            assert!(
                !verify_digest_signature(&public, Some(md), data, &trailing),
                "not DER"
            );
        }
    }

    /// 2048 to 8192 bits in steps of 8, e = 65537 only.
    #[test]
    fn rsa_keys_follow_the_baseline_requirements() {
        let real = Rsa::generate(2048).unwrap();
        assert_eq!(
            rsa_key_allowed(&real.n().to_vec(), &real.e().to_vec()),
            Ok(())
        );
        // The shape rules, on synthetic moduli (which the weakness checks
        // would refuse: 2^k − 1 has small factors): an odd modulus of
        // exactly `bits` bits (a multiple of 8).
        let odd = |bits: usize| vec![0xffu8; bits / 8];
        let e = [1, 0, 1];
        for bits in [2048, 2056, 3072, 4096, 8192] {
            assert_eq!(rsa_shape_allowed(&odd(bits), &e), Ok(()), "{bits}");
        }
        assert_eq!(
            rsa_shape_allowed(&[&[0, 0][..], &odd(2048)].concat(), &[0, 1, 0, 1]),
            Ok(())
        );
        for bits in [1024, 2040, 8200] {
            assert!(
                rsa_shape_allowed(&odd(bits), &e)
                    .unwrap_err()
                    .contains("modulus"),
                "{bits}"
            );
        }
        let mut seven_short = odd(2048);
        seven_short[0] = 0x01; // 2041 bits: not a multiple of 8
        assert!(rsa_shape_allowed(&seven_short, &e).is_err());
        let mut even = odd(2048);
        *even.last_mut().unwrap() = 0xfe;
        assert!(rsa_shape_allowed(&even, &e).unwrap_err().contains("even"));
        for bad_e in [&[3][..], &[1], &[1, 0, 0, 1], &[]] {
            assert!(
                rsa_shape_allowed(&odd(2048), bad_e)
                    .unwrap_err()
                    .contains("65537")
            );
        }
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert_eq!(public_key_from_spki(b"").err(), Some(PkixError::BadSpki));
        assert_eq!(
            public_key_from_spki(&[0x30, 0x03, 1, 2, 3]).err(),
            Some(PkixError::BadSpki)
        );
        let mut spki = ec(Nid::X9_62_PRIME256V1).public_key_to_der().unwrap();
        spki.push(0);
        assert_eq!(
            public_key_from_spki(&spki).err(),
            Some(PkixError::BadSpki),
            "trailing data"
        );
        // P-521 is a valid key, but not one Kiln accepts.
        let p521 = ec(Nid::SECP521R1).public_key_to_der().unwrap();
        assert!(matches!(
            public_key_from_spki(&p521),
            Err(PkixError::UnsupportedKey(_))
        ));
        // A point that is not on the curve.
        let mut off_curve = ec(Nid::X9_62_PRIME256V1).public_key_to_der().unwrap();
        let last = off_curve.len() - 1;
        off_curve[last] ^= 1;
        assert!(matches!(
            public_key_from_spki(&off_curve),
            Err(PkixError::InvalidKey(_))
        ));
        // The point at infinity: the P-256 AlgorithmIdentifier, then a BIT
        // STRING holding the single octet 0x00.
        let valid = ec(Nid::X9_62_PRIME256V1).public_key_to_der().unwrap();
        let algorithm = &valid[2..2 + 2 + valid[3] as usize];
        let mut infinity = vec![0x30, (algorithm.len() + 4) as u8];
        infinity.extend_from_slice(algorithm);
        infinity.extend_from_slice(&[0x03, 0x02, 0x00, 0x00]);
        assert!(matches!(
            public_key_from_spki(&infinity),
            Err(PkixError::InvalidKey(_))
        ));
    }

    #[test]
    fn certificate_signatures_verify_like_openssl() {
        let issuer = ec(Nid::X9_62_PRIME256V1);
        let other = ec(Nid::X9_62_PRIME256V1);
        let rsa = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let issuer_public = public_key_from_spki(&issuer.public_key_to_der().unwrap()).unwrap();
        let rsa_public = public_key_from_spki(&rsa.public_key_to_der().unwrap()).unwrap();
        for md in [MessageDigest::sha256(), MessageDigest::sha384()] {
            let der = cert(&other, &issuer, md);
            assert!(certificate_signed_by(&der, &issuer_public).unwrap());
            assert!(
                !certificate_signed_by(&der, &rsa_public).unwrap(),
                "wrong key type"
            );
            let by_other = cert(&other, &other, md);
            assert!(!certificate_signed_by(&by_other, &issuer_public).unwrap());
            assert!(
                certificate_public_key(&der)
                    .unwrap()
                    .public_eq(&public_key_from_spki(&other.public_key_to_der().unwrap()).unwrap())
            );
        }
        let by_rsa = cert(&other, &rsa, MessageDigest::sha256());
        assert!(certificate_signed_by(&by_rsa, &rsa_public).unwrap());
        assert!(!certificate_signed_by(&by_rsa, &issuer_public).unwrap());
        assert_eq!(
            certificate_signed_by(b"junk", &issuer_public),
            Err(PkixError::BadCertificate)
        );
    }
}
