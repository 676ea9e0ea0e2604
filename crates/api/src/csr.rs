//! Finalize's CSR checks (RFC 8555 §7.4): the CSR must be well-formed,
//! self-signed with an acceptable key that is not the account key, and ask
//! for exactly the order's names. Also the blocklist's name for a key
//! ([`key_digest`]), which finalize, newAccount, keyChange and revocation
//! share.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::{Identifier, Problem, ProblemKind};
use openssl::asn1::Asn1Object;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION, OID_PKCS1_SHA256WITHRSA,
    OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA, OID_SIG_ECDSA_WITH_SHA256,
    OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ECDSA_WITH_SHA512, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

/// What finalize may issue for: the CSR as checked, its names and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedCsr {
    /// The decoded request, the bytes the order stores and the signer reads.
    pub der: Vec<u8>,
    /// Lowercased, sorted, deduplicated; equal to the order's names.
    pub names: Vec<String>,
    pub public_key_spki_der: Vec<u8>,
}

const KEY_POLICY: &str =
    "use RSA (2048 to 8192 bits in multiples of 8, e = 65537) or ECDSA P-256/P-384";

/// A CSR key on a Debian weak-key list ([`pkix::debian_weak_keys`]).
const DEBIAN_WEAK_CSR_KEY: &str = "CSR key is one of the predictable RSA keys of Debian's \
     OpenSSL bug (CVE-2008-0166), on this CA's weak-key list; generate a new key";

/// Names listed in a problem detail; a hostile CSR may hold thousands.
const MAX_LISTED: usize = 10;

fn bad_csr(detail: impl Into<String>) -> Problem {
    Problem::new(ProblemKind::BadCsr, detail)
}

fn list(names: &BTreeSet<&str>) -> String {
    let mut shown: Vec<&str> = names.iter().take(MAX_LISTED).copied().collect();
    let more = names.len().saturating_sub(MAX_LISTED);
    let more = (more > 0).then(|| format!(" and {more} more"));
    if shown.is_empty() {
        shown.push("(none)");
    }
    format!("{}{}", shown.join(", "), more.unwrap_or_default())
}

/// `csr_b64`: the finalize payload's `csr` (base64url DER, no padding).
/// `order_identifiers`: the order's identifiers (dNSName SANs for `dns`,
/// iPAddress SANs for `ip`, compared as addresses). `account_key_spki_der`: the
/// requesting account's key. `weak_keys`: the Debian weak-key lists the
/// operator configured (`[api] debian_weak_key_files`).
pub fn check_csr(
    csr_b64: &str,
    order_identifiers: &[Identifier],
    account_key_spki_der: &[u8],
    weak_keys: &pkix::DebianWeakKeys,
) -> Result<CheckedCsr, Problem> {
    let der = URL_SAFE_NO_PAD
        .decode(csr_b64)
        .map_err(|_| bad_csr("csr is not base64url without padding"))?;
    let parsed = match X509CertificationRequest::from_der(&der) {
        Ok((rest, _)) if !rest.is_empty() => {
            return Err(bad_csr("csr has trailing data after the DER request"));
        }
        Ok((_, parsed)) => parsed,
        Err(_) => return Err(bad_csr("csr is not a DER-encoded PKCS#10 request")),
    };
    // Read with x509-parser and `pkix`, never OpenSSL's `X509Req::from_der`
    // or `public_key_from_der`: OpenSSL 3's decoder costs ~170 us per key.
    let spki = &parsed.certification_request_info.subject_pki;
    check_key_policy(spki)?;
    let key = pkix::public_key(spki).map_err(|_| bad_csr("CSR public key cannot be read"))?;
    if let Ok(rsa) = key.rsa() {
        let n = rsa.n().to_vec();
        pkix::rsa_key_allowed(&n, &rsa.e().to_vec())
            .map_err(|why| bad_csr(format!("CSR key is {why}; {KEY_POLICY}")))?;
        if weak_keys.contains(&n) {
            return Err(bad_csr(DEBIAN_WEAK_CSR_KEY));
        }
    }

    let sig_alg = &parsed.signature_algorithm.algorithm;
    let good_sig_algs = [
        OID_PKCS1_SHA256WITHRSA,
        OID_PKCS1_SHA384WITHRSA,
        OID_PKCS1_SHA512WITHRSA,
        OID_SIG_ECDSA_WITH_SHA256,
        OID_SIG_ECDSA_WITH_SHA384,
        OID_SIG_ECDSA_WITH_SHA512,
    ];
    if !good_sig_algs.contains(sig_alg) {
        return Err(bad_csr(format!(
            "CSR is signed with algorithm {sig_alg}; sign it with SHA-256, SHA-384 or SHA-512"
        )));
    }
    let verified = pkix::verify_signature(
        &key,
        &parsed.signature_algorithm,
        parsed.certification_request_info.raw,
        parsed.signature_value.data.as_ref(),
    )
    .unwrap_or(false);
    if !verified {
        return Err(bad_csr(
            "CSR signature does not verify with the CSR's own key",
        ));
    }

    // Compared as keys, not bytes: the same EC key has two point encodings.
    let account_key =
        pkix::public_key_from_spki(account_key_spki_der).map_err(|_| Problem::internal())?;
    if key.public_eq(&account_key) {
        return Err(bad_csr(
            "CSR public key must not be the account key; generate a separate certificate key",
        ));
    }

    let csr_names = names_of(&parsed)?;
    let order: BTreeSet<Identifier> = order_identifiers
        .iter()
        .map(|i| Identifier {
            kind: i.kind.clone(),
            value: i.value.to_ascii_lowercase(),
        })
        .collect();
    if csr_names != order {
        let shown = |i: &Identifier| i.value.clone();
        let extra: Vec<String> = csr_names.difference(&order).map(shown).collect();
        let missing: Vec<String> = order.difference(&csr_names).map(shown).collect();
        let extra: BTreeSet<&str> = extra.iter().map(String::as_str).collect();
        let missing: BTreeSet<&str> = missing.iter().map(String::as_str).collect();
        return Err(bad_csr(format!(
            "CSR names must equal the order's identifiers; not in the order: {}; missing from the CSR: {}",
            list(&extra),
            list(&missing)
        )));
    }

    let public_key_spki_der = spki.raw.to_vec();
    Ok(CheckedCsr {
        der,
        names: csr_names.into_iter().map(|i| i.value).collect(),
        public_key_spki_der,
    })
}

/// The blocklist's name for a public key ([`store::KeyDigest`], BR
/// 6.1.1.3): the SHA-256 of its DER SubjectPublicKeyInfo as `pkix` rebuilds
/// it (EC points uncompressed, named curves), so one key has one name
/// whether it came in a CSR, a certificate or a JWK, in whichever point
/// encoding. `spki_der` is a key Kiln has already accepted, so a key that
/// cannot be read here is an internal error.
pub fn key_digest(spki_der: &[u8]) -> Result<store::KeyDigest, Problem> {
    let canonical = pkix::canonical_spki_der(spki_der).map_err(|_| Problem::internal())?;
    Ok(store::KeyDigest::of_spki(&canonical))
}

/// The key types and curves Kiln issues for, decided on the parsed key
/// before any key is built (it also bounds what the signature check costs).
fn check_key_policy(spki: &SubjectPublicKeyInfo<'_>) -> Result<(), Problem> {
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = match pkix::Curve::of(spki) {
            Ok(_) => return Ok(()),
            Err(curve) => curve,
        };
        let name = curve
            .and_then(|oid| Asn1Object::from_str(&oid.to_id_string()).ok())
            .and_then(|object| object.nid().short_name().ok().map(str::to_owned))
            .unwrap_or_else(|| "(explicit parameters)".into());
        return Err(bad_csr(format!(
            "CSR key uses EC curve {name}; {KEY_POLICY}"
        )));
    }
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        return Ok(());
    }
    if *algorithm == OID_SIG_ED25519 {
        return Err(bad_csr(format!(
            "Ed25519 CSR keys are not supported yet; {KEY_POLICY}"
        )));
    }
    Err(bad_csr(format!(
        "CSR key type is not supported; {KEY_POLICY}"
    )))
}

/// The subject CN (if any) and all dNSName SANs, lowercased. Any other SAN
/// type is refused rather than silently dropped from the certificate.
/// The identifiers a CSR asks for: its CN (an address if it reads as one)
/// and its dNSName and iPAddress SANs.
fn names_of(csr: &X509CertificationRequest<'_>) -> Result<BTreeSet<Identifier>, Problem> {
    let mut names = BTreeSet::new();
    let mut cns = csr.certification_request_info.subject.iter_common_name();
    if let Some(cn) = cns.next() {
        if cns.next().is_some() {
            return Err(bad_csr("CSR subject has more than one CN"));
        }
        let cn = cn
            .as_str()
            .map_err(|_| bad_csr("CSR subject CN is not a readable string"))?;
        names.insert(Identifier::from_authz_value(&cn.to_ascii_lowercase()));
    }
    // Every extensionRequest attribute, not only the first one.
    let extensions = csr
        .certification_request_info
        .iter_attributes()
        .filter_map(|attr| match attr.parsed_attribute() {
            ParsedCriAttribute::ExtensionRequest(req) => Some(req.extensions.iter()),
            _ => None,
        })
        .flatten();
    for ext in extensions {
        if ext.oid != x509_parser::oid_registry::OID_X509_EXT_SUBJECT_ALT_NAME {
            continue;
        }
        let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() else {
            return Err(bad_csr(
                "CSR subjectAlternativeName extension cannot be parsed",
            ));
        };
        for name in &san.general_names {
            let kind = match name {
                GeneralName::DNSName(dns) => {
                    names.insert(Identifier::dns(dns.to_ascii_lowercase()));
                    continue;
                }
                GeneralName::IPAddress(octets) => {
                    let address = domain::ip_address::from_octets(octets);
                    let Some(address) = address else {
                        return Err(bad_csr(
                            "CSR requests an iPAddress SAN of neither 4 nor 16 octets",
                        ));
                    };
                    names.insert(Identifier::ip(address));
                    continue;
                }
                GeneralName::RFC822Name(_) => "an email address",
                GeneralName::URI(_) => "a URI",
                GeneralName::Invalid(..) => "an unparsable",
                _ => "a non-DNS",
            };
            return Err(bad_csr(format!(
                "CSR requests {kind} subjectAlternativeName; only dNSName and iPAddress SANs are supported"
            )));
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::pkey::Private;
    use openssl::rsa::Rsa;
    use openssl::stack::Stack;
    use openssl::x509::X509NameBuilder;
    use openssl::x509::X509Req;
    use openssl::x509::extension::SubjectAlternativeName;
    use std::sync::OnceLock;

    fn ec(nid: Nid) -> PKey<Private> {
        PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(nid).unwrap()).unwrap())
            .unwrap()
    }

    fn rsa2048() -> PKey<Private> {
        static KEY: OnceLock<PKey<Private>> = OnceLock::new();
        KEY.get_or_init(|| PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap())
            .clone()
    }

    /// A CSR for `cn` (optional) and the DNS SANs `dns`, plus `ip` SANs.
    fn csr_der(key: &PKey<Private>, cn: Option<&str>, dns: &[&str], ip: &[&str]) -> Vec<u8> {
        let mut builder = X509Req::builder().unwrap();
        builder.set_pubkey(key).unwrap();
        if let Some(cn) = cn {
            let mut name = X509NameBuilder::new().unwrap();
            name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
            builder.set_subject_name(&name.build()).unwrap();
        }
        if !dns.is_empty() || !ip.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for d in dns {
                san.dns(d);
            }
            for i in ip {
                san.ip(i);
            }
            let ext = san.build(&builder.x509v3_context(None)).unwrap();
            let mut stack = Stack::new().unwrap();
            stack.push(ext).unwrap();
            builder.add_extensions(&stack).unwrap();
        }
        builder.sign(key, MessageDigest::sha256()).unwrap();
        builder.build().to_der().unwrap()
    }

    fn b64(der: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(der)
    }

    fn order(names: &[&str]) -> Vec<Identifier> {
        names
            .iter()
            .map(|n| Identifier::from_authz_value(n))
            .collect()
    }

    fn account_spki() -> Vec<u8> {
        ec(Nid::X9_62_PRIME256V1).public_key_to_der().unwrap()
    }

    fn check(der: &[u8], names: &[&str]) -> Result<CheckedCsr, Problem> {
        check_csr(&b64(der), &order(names), &account_spki(), &no_weak_keys())
    }

    fn no_weak_keys() -> pkix::DebianWeakKeys {
        pkix::DebianWeakKeys::default()
    }

    #[test]
    fn good_csrs() {
        for key in [rsa2048(), ec(Nid::X9_62_PRIME256V1), ec(Nid::SECP384R1)] {
            let der = csr_der(&key, Some("a.example"), &["b.example", "a.example"], &[]);
            let checked = check(&der, &["b.example", "a.example"]).unwrap();
            assert_eq!(checked.der, der, "the checked bytes are the ones decoded");
            assert_eq!(checked.names, ["a.example", "b.example"]);
            assert_eq!(
                checked.public_key_spki_der,
                key.public_key_to_der().unwrap()
            );
        }
    }

    #[test]
    fn cn_only_and_uppercase_names() {
        let key = ec(Nid::X9_62_PRIME256V1);
        let checked = check(
            &csr_der(&key, Some("WWW.Example.COM"), &[], &[]),
            &["www.example.com"],
        )
        .unwrap();
        assert_eq!(checked.names, ["www.example.com"]);

        let der = csr_der(&key, None, &["*.Example.com", "EXAMPLE.com"], &[]);
        let checked = check(&der, &["example.com", "*.example.com"]).unwrap();
        assert_eq!(checked.names, ["*.example.com", "example.com"]);
    }

    #[test]
    fn names_must_match_exactly() {
        let key = ec(Nid::X9_62_PRIME256V1);
        let der = csr_der(&key, None, &["a.example", "evil.example"], &[]);
        let err = check(&der, &["a.example"]).unwrap_err();
        assert_eq!(err.kind, ProblemKind::BadCsr);
        assert!(
            err.detail.contains("not in the order: evil.example;"),
            "{}",
            err.detail
        );

        let der = csr_der(&key, None, &["a.example"], &[]);
        let err = check(&der, &["a.example", "b.example"]).unwrap_err();
        assert_eq!(err.kind, ProblemKind::BadCsr);
        assert!(
            err.detail.contains("missing from the CSR: b.example"),
            "{}",
            err.detail
        );

        // A CN outside the SANs counts as an extra name too.
        let der = csr_der(&key, Some("c.example"), &["a.example"], &[]);
        let err = check(&der, &["a.example"]).unwrap_err();
        assert!(err.detail.contains("c.example"), "{}", err.detail);
    }

    #[test]
    fn ip_sans_must_match_ip_identifiers() {
        let key = ec(Nid::X9_62_PRIME256V1);
        let der = csr_der(&key, None, &["a.example"], &["192.0.2.1"]);
        let err = check(&der, &["a.example"]).unwrap_err();
        assert_eq!(err.kind, ProblemKind::BadCsr);
        assert!(
            err.detail.contains("not in the order: 192.0.2.1"),
            "{}",
            err.detail
        );
        let checked = check(&der, &["a.example", "192.0.2.1"]).unwrap();
        assert_eq!(checked.names, ["a.example", "192.0.2.1"]);
        // Compared as addresses: any spelling of ::1 in the SAN is ::1.
        let der = csr_der(&key, None, &[], &["0:0:0:0:0:0:0:1"]);
        assert!(check(&der, &["::1"]).is_ok());
        // A dNSName spelling an address is not the address.
        let der = csr_der(&key, None, &["192.0.2.1"], &[]);
        let err = check(&der, &["192.0.2.1"]).unwrap_err();
        assert!(
            err.detail.contains("missing from the CSR: 192.0.2.1"),
            "{}",
            err.detail
        );
    }

    #[test]
    fn weak_or_unsupported_keys_refused() {
        let rsa1024 = PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap();
        let err = check(
            &csr_der(&rsa1024, None, &["a.example"], &[]),
            &["a.example"],
        )
        .unwrap_err();
        assert_eq!(err.kind, ProblemKind::BadCsr);
        assert!(err.detail.contains("1024"), "{}", err.detail);

        // BR 6.1.6: the public exponent is 65537, nothing else.
        let e3 = Rsa::generate_with_e(2048, &openssl::bn::BigNum::from_u32(3).unwrap()).unwrap();
        let e3 = PKey::from_rsa(e3).unwrap();
        let err = check(&csr_der(&e3, None, &["a.example"], &[]), &["a.example"]).unwrap_err();
        assert_eq!(err.kind, ProblemKind::BadCsr);
        assert!(err.detail.contains("65537"), "{}", err.detail);

        let p521 = ec(Nid::SECP521R1);
        let err = check(&csr_der(&p521, None, &["a.example"], &[]), &["a.example"]).unwrap_err();
        assert!(err.detail.contains("secp521r1"), "{}", err.detail);

        // Ed25519 CSRs are signed without a digest.
        let ed = PKey::generate_ed25519().unwrap();
        let mut builder = X509Req::builder().unwrap();
        builder.set_pubkey(&ed).unwrap();
        builder.sign(&ed, MessageDigest::null()).unwrap();
        let err = check(&builder.build().to_der().unwrap(), &["a.example"]).unwrap_err();
        assert_eq!(err.kind, ProblemKind::BadCsr);
        assert!(err.detail.contains("Ed25519"), "{}", err.detail);
    }

    /// A key on a configured Debian weak-key list is refused; the list
    /// names that key only.
    #[test]
    fn debian_weak_keys_refused() {
        let weak = rsa2048();
        let n = weak.rsa().unwrap().n().to_vec();
        let mut list = no_weak_keys();
        let line = pkix::debian_weak_keys::fingerprint(&n);
        list.add_list(&line, std::path::Path::new("list")).unwrap();
        let der = csr_der(&weak, None, &["a.example"], &[]);
        let names = order(&["a.example"]);
        let err = check_csr(&b64(&der), &names, &account_spki(), &list).unwrap_err();
        assert_eq!(err.kind, ProblemKind::BadCsr);
        assert!(err.detail.contains("CVE-2008-0166"), "{}", err.detail);
        let other = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let der = csr_der(&other, None, &["a.example"], &[]);
        check_csr(&b64(&der), &names, &account_spki(), &list).unwrap();
        let der = csr_der(&ec(Nid::X9_62_PRIME256V1), None, &["a.example"], &[]);
        check_csr(&b64(&der), &names, &account_spki(), &list).unwrap();
    }

    #[test]
    fn bad_self_signature() {
        let mut der = csr_der(&rsa2048(), None, &["a.example"], &[]);
        // The last octet belongs to the RSA signature value.
        *der.last_mut().unwrap() ^= 0x01;
        let err = check(&der, &["a.example"]).unwrap_err();
        assert_eq!(err.kind, ProblemKind::BadCsr);
        assert!(err.detail.contains("signature"), "{}", err.detail);
    }

    #[test]
    fn account_key_refused() {
        let key = ec(Nid::X9_62_PRIME256V1);
        let der = csr_der(&key, None, &["a.example"], &[]);
        let spki = key.public_key_to_der().unwrap();
        let err =
            check_csr(&b64(&der), &order(&["a.example"]), &spki, &no_weak_keys()).unwrap_err();
        assert_eq!(err.kind, ProblemKind::BadCsr);
        assert!(err.detail.contains("account key"), "{}", err.detail);
    }

    #[test]
    fn garbage_input() {
        let acct = account_spki();
        let names = order(&["a.example"]);
        for csr in [
            "not base64!".to_owned(),
            "AAAA=".to_owned(),
            b64(b"definitely not DER"),
            b64(&[0x30, 0x03, 0x02, 0x01]),
        ] {
            let err = check_csr(&csr, &names, &acct, &no_weak_keys()).unwrap_err();
            assert_eq!(err.kind, ProblemKind::BadCsr, "{csr}");
        }
        let mut der = csr_der(&rsa2048(), None, &["a.example"], &[]);
        der.push(0);
        let err = check(&der, &["a.example"]).unwrap_err();
        assert!(err.detail.contains("trailing"), "{}", err.detail);
    }

    /// One key, one name: a P-256 key's SPKI with its point compressed or
    /// not, and the key as a JWK, all have the same digest.
    #[test]
    fn a_key_digest_does_not_depend_on_the_encoding() {
        use openssl::bn::BigNumContext;
        use openssl::ec::PointConversionForm;
        let key = ec(Nid::X9_62_PRIME256V1);
        let ec_key = key.ec_key().unwrap();
        let mut ctx = BigNumContext::new().unwrap();
        let mut spki_with = |form| {
            let point = ec_key
                .public_key()
                .to_bytes(ec_key.group(), form, &mut ctx)
                .unwrap();
            // SEQUENCE { id-ecPublicKey, prime256v1 }, then the BIT STRING.
            let algorithm = [
                0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
                0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
            ];
            let mut inner = algorithm.to_vec();
            inner.extend_from_slice(&[0x03, point.len() as u8 + 1, 0x00]);
            inner.extend_from_slice(&point);
            let mut der = vec![0x30, inner.len() as u8];
            der.extend_from_slice(&inner);
            der
        };
        let uncompressed = spki_with(PointConversionForm::UNCOMPRESSED);
        let compressed = spki_with(PointConversionForm::COMPRESSED);
        assert_eq!(uncompressed, key.public_key_to_der().unwrap());
        assert_ne!(uncompressed, compressed);
        let digest = key_digest(&uncompressed).unwrap();
        assert_eq!(key_digest(&compressed).unwrap(), digest);
        assert_eq!(digest, store::KeyDigest::of_spki(&uncompressed));
        let jwk = crate::jwk::Jwk::from_public_key(&key).unwrap();
        assert_eq!(key_digest(jwk.public_key_spki_der()).unwrap(), digest);
        let other = ec(Nid::X9_62_PRIME256V1).public_key_to_der().unwrap();
        assert_ne!(key_digest(&other).unwrap(), digest);
        let rsa = rsa2048().public_key_to_der().unwrap();
        assert_eq!(key_digest(&rsa).unwrap(), store::KeyDigest::of_spki(&rsa));
    }
}
