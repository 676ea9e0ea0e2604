use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509, X509StoreContext, X509VerifyResult};
use signer::ca::CaHierarchy;
use signer::certificate::{
    CT_POISON_OID, CT_SCT_LIST_OID, CertError, LeafRequest, LintError, Profile,
    build_final_certificate, build_precertificate, lint_leaf, precertificate_der,
};
use signer::serial::new_serial;
use x509_parser::prelude::*;

const AIA_URL: &str = "http://kiln.test/intermediate.der";
const CRL_URL: &str = "http://kiln.test/crl/1.crl";

fn profile() -> Profile {
    Profile::new(AIA_URL, CRL_URL)
}

fn ec_key(nid: Nid) -> PKey<Private> {
    let group = EcGroup::from_curve_name(nid).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn rsa_key(bits: u32) -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(bits).unwrap()).unwrap()
}

fn now() -> i64 {
    ::time::OffsetDateTime::now_utc().unix_timestamp()
}

fn request(key: &PKey<Private>, names: &[&str]) -> LeafRequest {
    let (not_before, not_after) = profile().validity_window(now());
    LeafRequest {
        serial: new_serial(0x01).unwrap(),
        dns_names: names.iter().map(|n| n.to_string()).collect(),
        ip_addresses: vec![],
        public_key_der: key.public_key_to_der().unwrap(),
        not_before,
        not_after,
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| n.to_string()).collect()
}

/// A syntactically valid TLS SignedCertificateTimestampList with one fake
/// SCT, wrapped in the OCTET STRING that forms the extension value.
fn fake_sct_list_ext() -> Vec<u8> {
    let mut sct = vec![0u8]; // v1
    sct.extend([0xaa; 32]); // log id
    sct.extend(1_700_000_000_000u64.to_be_bytes());
    sct.extend([0, 0]); // no extensions
    sct.extend([4, 3]); // sha256 / ecdsa
    sct.extend(8u16.to_be_bytes());
    sct.extend([0x55; 8]);
    let mut list = ((sct.len() + 2) as u16).to_be_bytes().to_vec();
    list.extend((sct.len() as u16).to_be_bytes());
    list.extend(sct);
    let mut ext = vec![0x04, list.len() as u8];
    ext.extend(list);
    ext
}

/// OpenSSL's X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION.
const UNHANDLED_CRITICAL_EXTENSION: i32 = 34;

fn verify_chain(leaf: &X509, ca: &CaHierarchy) -> Result<(), X509VerifyResult> {
    let mut store = X509StoreBuilder::new().unwrap();
    store.add_cert(ca.root.cert.clone()).unwrap();
    let store = store.build();
    let mut chain = Stack::new().unwrap();
    chain.push(ca.intermediate.cert.clone()).unwrap();
    let mut ctx = X509StoreContext::new().unwrap();
    ctx.init(&store, leaf, &chain, |c| {
        Ok(if c.verify_cert()? {
            Ok(())
        } else {
            Err(c.error())
        })
    })
    .unwrap()
}

/// (oid, critical, value) for each extension, in order.
fn extensions(der: &[u8]) -> Vec<(String, bool, Vec<u8>)> {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    cert.extensions()
        .iter()
        .map(|e| (e.oid.to_id_string(), e.critical, e.value.to_vec()))
        .collect()
}

// --- A minimal DER walker, independent of the library's, for the RFC 6962
// --- "TBS minus poison == TBS minus SCT list" check.

fn tlv(input: &[u8]) -> (u8, &[u8], &[u8], &[u8]) {
    let tag = input[0];
    let (len, hdr) = match input[1] {
        l if l < 0x80 => (l as usize, 2),
        l => {
            let n = (l & 0x7f) as usize;
            let len = input[2..2 + n]
                .iter()
                .fold(0usize, |a, &b| a << 8 | b as usize);
            (len, 2 + n)
        }
    };
    (
        tag,
        &input[..hdr + len],
        &input[hdr..hdr + len],
        &input[hdr + len..],
    )
}

fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        l if l < 0x80 => out.push(l as u8),
        l if l < 0x100 => out.extend([0x81, l as u8]),
        l => out.extend([0x82, (l >> 8) as u8, l as u8]),
    }
    out.extend_from_slice(content);
    out
}

fn oid_content(oid: &str) -> Vec<u8> {
    openssl::asn1::Asn1Object::from_str(oid)
        .unwrap()
        .as_slice()
        .to_vec()
}

/// TBSCertificate of `cert_der` with the extension `oid` dropped.
fn tbs_without(cert_der: &[u8], oid: &str) -> Vec<u8> {
    let oid = oid_content(oid);
    let (_, _, cert, _) = tlv(cert_der);
    let (_, _, mut rest, _) = tlv(cert);
    let mut tbs = Vec::new();
    while !rest.is_empty() {
        let (tag, whole, content, next) = tlv(rest);
        rest = next;
        if tag != 0xa3 {
            tbs.extend_from_slice(whole);
            continue;
        }
        let (_, _, mut exts, _) = tlv(content);
        let mut kept = Vec::new();
        while !exts.is_empty() {
            let (_, ext, ext_content, next) = tlv(exts);
            exts = next;
            let (_, _, ext_oid, _) = tlv(ext_content);
            if ext_oid != oid.as_slice() {
                kept.extend_from_slice(ext);
            }
        }
        tbs.extend(encode(0xa3, &encode(0x30, &kept)));
    }
    encode(0x30, &tbs)
}

#[test]
fn leaf_chains_to_root() {
    let ca = CaHierarchy::generate().unwrap();
    let key = ec_key(Nid::X9_62_PRIME256V1);
    let req = request(&key, &["example.com", "www.example.com"]);
    let precert = build_precertificate(&ca.intermediate, &req, &profile()).unwrap();
    let final_cert = build_final_certificate(
        &ca.intermediate,
        &precert.to_der().unwrap(),
        &fake_sct_list_ext(),
    )
    .unwrap();

    assert!(
        ca.intermediate
            .cert
            .verify(ca.root.key.as_ref().unwrap())
            .unwrap()
    );
    assert!(
        final_cert
            .verify(ca.intermediate.key.as_ref().unwrap())
            .unwrap()
    );
    verify_chain(&final_cert, &ca).unwrap();
    verify_chain(&ca.intermediate.cert, &ca).unwrap();
    // The poison does its job: relying parties refuse the precertificate.
    let err = verify_chain(&precert, &ca).unwrap_err();
    assert_eq!(err.as_raw(), UNHANDLED_CRITICAL_EXTENSION);
}

#[test]
fn precertificates_for_each_key_type() {
    let ca = CaHierarchy::generate().unwrap();
    let profile = profile();
    for (label, key, is_rsa) in [
        ("rsa2048", rsa_key(2048), true),
        ("p256", ec_key(Nid::X9_62_PRIME256V1), false),
        ("p384", ec_key(Nid::SECP384R1), false),
    ] {
        let req = request(&key, &["example.com", "*.example.com"]);
        let precert = build_precertificate(&ca.intermediate, &req, &profile).unwrap();
        let der = precert.to_der().unwrap();
        lint_leaf(&der, &req.dns_names, &profile).unwrap();

        let exts = extensions(&der);
        let poison = exts.iter().find(|(oid, ..)| oid == CT_POISON_OID);
        assert_eq!(
            poison,
            Some(&(CT_POISON_OID.to_string(), true, vec![0x05, 0x00])),
            "{label}"
        );
        assert_eq!(
            exts.last().unwrap().0,
            CT_POISON_OID,
            "{label}: poison last"
        );

        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical && ku.value.digital_signature(), "{label}");
        assert_eq!(ku.value.key_encipherment(), is_rsa, "{label}");
        assert_eq!(cert.raw_serial(), req.serial.as_slice(), "{label}");
        assert!(precert.public_key().unwrap().public_eq(&key), "{label}");
        assert_eq!(
            cert.validity().not_before.timestamp(),
            req.not_before,
            "{label}"
        );
        assert_eq!(
            cert.validity().not_after.timestamp(),
            req.not_after,
            "{label}"
        );
    }
}

#[test]
fn leaf_contents_and_extension_order() {
    let ca = CaHierarchy::generate().unwrap();
    let key = ec_key(Nid::X9_62_PRIME256V1);
    let req = request(&key, &["www.example.com", "*.example.com", "example.com"]);
    let der = build_precertificate(&ca.intermediate, &req, &profile())
        .unwrap()
        .to_der()
        .unwrap();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();

    assert_eq!(cert.version(), X509Version::V3);
    let cn: Vec<_> = cert
        .subject()
        .iter_common_name()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(cn, ["example.com"], "shortest non-wildcard name");
    let issuer_der = ca.intermediate.cert.to_der().unwrap();
    let (_, issuer) = X509Certificate::from_der(&issuer_der).unwrap();
    assert_eq!(cert.issuer().as_raw(), issuer.subject().as_raw());

    let oids: Vec<String> = extensions(&der).into_iter().map(|(oid, ..)| oid).collect();
    assert_eq!(
        oids,
        [
            "2.5.29.15",         // keyUsage
            "2.5.29.37",         // extKeyUsage
            "2.5.29.19",         // basicConstraints
            "2.5.29.14",         // SKI
            "2.5.29.35",         // AKI
            "1.3.6.1.5.5.7.1.1", // AIA
            "2.5.29.17",         // SAN
            "2.5.29.32",         // certificatePolicies
            "2.5.29.31",         // CRL DP
            CT_POISON_OID,
        ]
    );

    // SKI is SHA-1 of the subjectPublicKey; AKI points at the intermediate's SKI.
    let ski = cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        ski,
        openssl::sha::sha1(cert.public_key().subject_public_key.as_ref())
    );
    let aki = cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        aki,
        ca.intermediate.cert.subject_key_id().unwrap().as_slice()
    );

    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert!(!san.critical);
    let dns: Vec<_> = san
        .value
        .general_names
        .iter()
        .map(|g| match g {
            GeneralName::DNSName(n) => *n,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(dns, ["www.example.com", "*.example.com", "example.com"]);
    let eku = cert.extended_key_usage().unwrap().unwrap();
    assert!(eku.value.server_auth);
    let bc = cert.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && !bc.value.ca);
}

#[test]
fn long_name_gives_empty_subject_and_critical_san() {
    let ca = CaHierarchy::generate().unwrap();
    let long = format!("{}.example.com", "a".repeat(60));
    let key = ec_key(Nid::X9_62_PRIME256V1);
    let req = request(&key, &[&long, "*.example.com"]);
    let der = build_precertificate(&ca.intermediate, &req, &profile())
        .unwrap()
        .to_der()
        .unwrap();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(cert.subject().iter_attributes().count(), 0);
    assert!(cert.subject_alternative_name().unwrap().unwrap().critical);
}

/// IP identifiers (RFC 8738) become iPAddress SANs of 4 or 16 octets,
/// beside any dNSNames, never a common name; the lint holds the SANs to
/// the request, and a profile with a common name refuses addresses.
#[test]
fn ip_addresses_are_ip_address_sans_without_a_common_name() {
    use domain::CertificateProfile;
    use x509_parser::extensions::GeneralName;
    let ca = CaHierarchy::generate().unwrap();
    let key = ec_key(Nid::X9_62_PRIME256V1);
    let shortlived = profile().for_order(CertificateProfile::ShortLived);
    let (not_before, not_after) = shortlived.validity_window(now());
    let addresses: Vec<std::net::IpAddr> =
        vec!["192.0.2.7".parse().unwrap(), "2001:db8::7".parse().unwrap()];
    let req = LeafRequest {
        not_before,
        not_after,
        ip_addresses: addresses.clone(),
        ..request(&key, &["www.example.com"])
    };
    let der = precertificate_der(&ca.intermediate, &req, &shortlived).unwrap();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(cert.subject().iter_attributes().count(), 0);
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert!(san.critical, "an empty subject needs a critical SAN");
    let sans: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => format!("dns:{d}"),
            GeneralName::IPAddress(o) => format!("ip:{}", hex::encode(o)),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        sans,
        [
            "dns:www.example.com".to_string(),
            "ip:c0000207".into(),
            "ip:20010db8000000000000000000000007".into()
        ]
    );
    lint_leaf(&der, &req.san_names(), &shortlived).unwrap();
    // The lint compares addresses too: one missing is a violation.
    assert!(lint_leaf(&der, &names(&["www.example.com", "192.0.2.7"]), &shortlived).is_err());
    // A profile that writes a common name takes no address.
    let classic_req = LeafRequest {
        ip_addresses: addresses,
        ..request(&key, &["www.example.com"])
    };
    assert!(precertificate_der(&ca.intermediate, &classic_req, &profile()).is_err());
    let only_ip = LeafRequest {
        dns_names: vec![],
        ..req
    };
    precertificate_der(&ca.intermediate, &only_ip, &shortlived).unwrap();
}

/// `tlsserver` and `shortlived` carry no common name even when one fits,
/// and their own lifetimes; `classic` keeps the deployment's.
#[test]
fn order_profiles_set_the_subject_and_the_lifetime() {
    use domain::CertificateProfile;
    let ca = CaHierarchy::generate().unwrap();
    let key = ec_key(Nid::X9_62_PRIME256V1);
    let base = Profile {
        validity: std::time::Duration::from_secs(30 * 86_400),
        ..profile()
    };
    for (order_profile, lifetime, cn) in [
        (CertificateProfile::Classic, 30 * 86_400, true),
        (CertificateProfile::TlsServer, 45 * 86_400, false),
        (CertificateProfile::ShortLived, 160 * 3_600, false),
    ] {
        let leaf_profile = base.for_order(order_profile);
        let (not_before, not_after) = leaf_profile.validity_window(now());
        assert_eq!(not_after - not_before + 1, lifetime, "{order_profile}");
        let req = LeafRequest {
            not_before,
            not_after,
            ..request(&key, &["www.example.com", "example.com"])
        };
        let der = build_precertificate(&ca.intermediate, &req, &leaf_profile)
            .unwrap()
            .to_der()
            .unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(
            cert.subject().iter_common_name().count() == 1,
            cn,
            "{order_profile}"
        );
        // An empty subject needs a critical SAN (RFC 5280 §4.2.1.6).
        assert_eq!(
            cert.subject_alternative_name().unwrap().unwrap().critical,
            !cn,
            "{order_profile}"
        );
    }
}

#[test]
fn final_certificate_swaps_poison_for_sct_list() {
    let ca = CaHierarchy::generate().unwrap();
    for key in [rsa_key(2048), ec_key(Nid::SECP384R1)] {
        let req = request(&key, &["example.com", "*.example.com"]);
        let precert = build_precertificate(&ca.intermediate, &req, &profile())
            .unwrap()
            .to_der()
            .unwrap();
        let sct_ext = fake_sct_list_ext();
        let final_der = build_final_certificate(&ca.intermediate, &precert, &sct_ext)
            .unwrap()
            .to_der()
            .unwrap();

        // RFC 6962 §3.2: the log reconstructs exactly this.
        assert_eq!(
            tbs_without(&final_der, CT_SCT_LIST_OID),
            tbs_without(&precert, CT_POISON_OID)
        );

        let pre_exts = extensions(&precert);
        let final_exts = extensions(&final_der);
        let poison_at = pre_exts
            .iter()
            .position(|(oid, ..)| oid == CT_POISON_OID)
            .unwrap();
        assert!(final_exts.iter().all(|(oid, ..)| oid != CT_POISON_OID));
        assert_eq!(
            final_exts[poison_at],
            (CT_SCT_LIST_OID.to_string(), false, sct_ext.clone())
        );
        let mut expected = pre_exts.clone();
        expected.remove(poison_at);
        let mut actual = final_exts.clone();
        actual.remove(poison_at);
        assert_eq!(actual, expected);

        let (_, pre) = X509Certificate::from_der(&precert).unwrap();
        let (_, fin) = X509Certificate::from_der(&final_der).unwrap();
        assert_eq!(pre.raw_serial(), fin.raw_serial());
        assert_eq!(pre.validity(), fin.validity());
        assert_eq!(pre.subject().as_raw(), fin.subject().as_raw());
        assert_eq!(pre.issuer().as_raw(), fin.issuer().as_raw());
        assert_eq!(pre.public_key().raw, fin.public_key().raw);

        lint_leaf(&final_der, &req.dns_names, &profile()).unwrap();
    }
}

#[test]
fn final_certificate_rejects_foreign_precert_and_bad_sct_list() {
    let ca = CaHierarchy::generate().unwrap();
    let other = CaHierarchy::generate().unwrap();
    let key = ec_key(Nid::X9_62_PRIME256V1);
    let req = request(&key, &["example.com"]);
    let precert = build_precertificate(&other.intermediate, &req, &profile())
        .unwrap()
        .to_der()
        .unwrap();
    assert!(matches!(
        build_final_certificate(&ca.intermediate, &precert, &fake_sct_list_ext()),
        Err(CertError::BadPrecertificate(_))
    ));
    // Raw TLS bytes without the OCTET STRING wrapper.
    let unwrapped = &fake_sct_list_ext()[2..];
    assert!(matches!(
        build_final_certificate(&other.intermediate, &precert, unwrapped),
        Err(CertError::BadSctList(_))
    ));
    // A final certificate is not a precertificate.
    let final_der = build_final_certificate(&other.intermediate, &precert, &fake_sct_list_ext())
        .unwrap()
        .to_der()
        .unwrap();
    assert!(matches!(
        build_final_certificate(&other.intermediate, &final_der, &fake_sct_list_ext()),
        Err(CertError::BadPrecertificate(_))
    ));
}

#[test]
fn unsupported_keys_refused() {
    let ca = CaHierarchy::generate().unwrap();
    for key in [
        rsa_key(1024),
        ec_key(Nid::SECP521R1),
        PKey::generate_ed25519().unwrap(),
    ] {
        let req = request(&key, &["example.com"]);
        assert!(matches!(
            build_precertificate(&ca.intermediate, &req, &profile()),
            Err(CertError::UnsupportedKey(_))
        ));
    }
}

#[test]
fn lint_rejects_name_and_validity_mismatches() {
    let ca = CaHierarchy::generate().unwrap();
    let profile = profile();
    let key = ec_key(Nid::X9_62_PRIME256V1);
    let req = request(&key, &["example.com", "www.example.com"]);
    let der = build_precertificate(&ca.intermediate, &req, &profile)
        .unwrap()
        .to_der()
        .unwrap();

    // A requested name that the certificate lacks.
    let err = lint_leaf(
        &der,
        &names(&["example.com", "www.example.com", "api.example.com"]),
        &profile,
    )
    .unwrap_err();
    assert_eq!(
        err,
        LintError::SanMismatch {
            missing: names(&["api.example.com"]),
            extra: vec![],
        }
    );

    // A certificate name nobody asked for.
    let err = lint_leaf(&der, &names(&["example.com"]), &profile).unwrap_err();
    assert_eq!(
        err,
        LintError::SanMismatch {
            missing: vec![],
            extra: names(&["www.example.com"]),
        }
    );

    // The same certificate under a stricter profile.
    let strict = Profile {
        validity: std::time::Duration::from_secs(7 * 24 * 3600),
        ..profile.clone()
    };
    assert!(matches!(
        lint_leaf(&der, &req.dns_names, &strict),
        Err(LintError::ValidityTooLong { .. })
    ));

    // And the builder refuses to sign a request one second too long.
    let mut too_long = request(&key, &["example.com"]);
    too_long.not_after += 1;
    assert!(matches!(
        build_precertificate(&ca.intermediate, &too_long, &profile),
        Err(CertError::Lint(LintError::ValidityTooLong { .. }))
    ));

    // Profile URLs are linted too.
    let other_urls = Profile::new("http://elsewhere/ca.der", CRL_URL);
    assert!(matches!(
        lint_leaf(&der, &req.dns_names, &other_urls),
        Err(LintError::Violation {
            field: "authorityInfoAccess",
            ..
        })
    ));
}

#[test]
fn lint_rejects_non_leaf_profiles() {
    let ca = CaHierarchy::generate().unwrap();
    let intermediate = ca.intermediate.cert.to_der().unwrap();
    let expected = names(&["example.com"]);
    assert!(matches!(
        lint_leaf(&intermediate, &expected, &profile()),
        Err(LintError::ValidityTooLong { .. })
    ));
    // Even with the validity allowed, a CA certificate is no leaf.
    let lenient = Profile {
        validity: std::time::Duration::from_secs(20 * 365 * 24 * 3600),
        ..profile()
    };
    assert!(matches!(
        lint_leaf(&intermediate, &expected, &lenient),
        Err(LintError::Violation { .. })
    ));
    // The listener certificate has no AIA/CRL/policies: not a public leaf.
    let (tls, _) = ca.tls_server_certificate(&["example.com"], &[]).unwrap();
    assert!(matches!(
        lint_leaf(&tls.to_der().unwrap(), &expected, &lenient),
        Err(LintError::MissingExtension(_))
    ));
    assert!(matches!(
        lint_leaf(b"not a certificate", &expected, &profile()),
        Err(LintError::Unparseable(_))
    ));
}

/// The Baseline Requirements allow only http:// for AIA caIssuers and CRL
/// distribution points: an https profile is refused before anything is
/// signed, and lint refuses such a certificate.
#[test]
fn https_aia_or_crl_urls_are_refused() {
    let ca = CaHierarchy::generate().unwrap();
    let key = ec_key(Nid::X9_62_PRIME256V1);
    let req = request(&key, &["example.com"]);
    for profile in [
        Profile::new("https://kiln.test/intermediate.der", CRL_URL),
        Profile::new(AIA_URL, "https://kiln.test/crl/1.crl"),
    ] {
        assert!(matches!(
            build_precertificate(&ca.intermediate, &req, &profile),
            Err(CertError::InvalidProfile(_))
        ));
    }
    // A certificate made elsewhere with a non-http CRL URL fails lint even
    // against a profile naming that URL.
    let good = build_precertificate(&ca.intermediate, &req, &profile()).unwrap();
    let der = good.to_der().unwrap();
    let other_crl = CRL_URL.replacen("http://", "ldap://", 1);
    assert_eq!(other_crl.len(), CRL_URL.len());
    let pos = der
        .windows(CRL_URL.len())
        .position(|w| w == CRL_URL.as_bytes())
        .unwrap();
    let mut forged = der.clone();
    forged[pos..pos + CRL_URL.len()].copy_from_slice(other_crl.as_bytes());
    let lenient = Profile {
        crl_url: other_crl,
        ..profile()
    };
    assert!(matches!(
        lint_leaf(&forged, &req.dns_names, &lenient),
        Err(LintError::Violation {
            field: "crlDistributionPoints",
            ..
        })
    ));
    // The same certificate with the genuine URL passes.
    lint_leaf(&der, &req.dns_names, &profile()).unwrap();
}

#[test]
fn bad_requests_refused() {
    let ca = CaHierarchy::generate().unwrap();
    let key = ec_key(Nid::X9_62_PRIME256V1);
    let cases: [fn(&mut LeafRequest); 6] = [
        |r| r.dns_names.clear(),
        |r| r.dns_names = names(&["Example.com"]),
        |r| r.serial = vec![0x80; 18],
        |r| r.serial = vec![0x00, 0x01],
        |r| r.serial = vec![0x01; 21],
        |r| r.not_after = r.not_before,
    ];
    for mutate in cases {
        let mut req = request(&key, &["example.com"]);
        mutate(&mut req);
        assert!(matches!(
            build_precertificate(&ca.intermediate, &req, &profile()),
            Err(CertError::InvalidRequest(_))
        ));
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let mut suffix = [0u8; 8];
        openssl::rand::rand_bytes(&mut suffix).unwrap();
        Self(std::env::temp_dir().join(format!("kiln-signer-{}", hex::encode(suffix))))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn load_or_create_persists_the_ca() {
    let dir = TempDir::new();
    let ca_dir = dir.0.join("ca");
    let first = CaHierarchy::load_or_create(&ca_dir).unwrap();
    let second = CaHierarchy::load_or_create(&ca_dir).unwrap();
    assert_eq!(first.root.cert, second.root.cert);
    assert_eq!(first.intermediate.cert, second.intermediate.cert);
    assert!(
        first
            .root
            .key
            .as_ref()
            .unwrap()
            .public_eq(second.root.key.as_ref().unwrap())
    );
    assert!(
        first
            .intermediate
            .key
            .as_ref()
            .unwrap()
            .public_eq(second.intermediate.key.as_ref().unwrap())
    );

    for key_file in ["root-key.pem", "intermediate-key.pem"] {
        let mode = std::fs::metadata(ca_dir.join(key_file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key_file}");
    }
    // No temp files left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&ca_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A loaded CA still issues verifiable leaves.
    let key = ec_key(Nid::X9_62_PRIME256V1);
    let precert = build_precertificate(
        &second.intermediate,
        &request(&key, &["example.com"]),
        &profile(),
    )
    .unwrap();
    let leaf = build_final_certificate(
        &second.intermediate,
        &precert.to_der().unwrap(),
        &fake_sct_list_ext(),
    )
    .unwrap();
    verify_chain(&leaf, &first).unwrap();
}

#[test]
fn load_or_create_refuses_incomplete_dir() {
    let dir = TempDir::new();
    CaHierarchy::load_or_create(&dir.0).unwrap();
    std::fs::remove_file(dir.0.join("intermediate-key.pem")).unwrap();
    assert!(matches!(
        CaHierarchy::load_or_create(&dir.0),
        Err(signer::ca::CaError::Incomplete(_))
    ));
}

#[test]
fn load_or_create_refuses_mismatched_key() {
    let dir = TempDir::new();
    CaHierarchy::load_or_create(&dir.0).unwrap();
    let stranger = ec_key(Nid::X9_62_PRIME256V1);
    std::fs::write(
        dir.0.join("intermediate-key.pem"),
        stranger.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap();
    assert!(matches!(
        CaHierarchy::load_or_create(&dir.0),
        Err(signer::ca::CaError::Inconsistent(_))
    ));
}

/// The production signer's load: no root key needed, nothing created, a
/// missing file named, a loose key file or another CA's root refused.
#[test]
fn the_signer_loads_the_issuing_ca_only_and_never_creates_one() {
    use signer::ca::{CaError, IssuingCa};
    let dir = TempDir::new();
    let created = CaHierarchy::load_or_create(&dir.0).unwrap();
    std::fs::remove_file(dir.0.join("root-key.pem")).unwrap();
    let issuing = IssuingCa::load(&dir.0).unwrap();
    assert_eq!(issuing.intermediate.cert, created.intermediate.cert);
    assert_eq!(issuing.root_cert, created.root.cert);

    let empty = TempDir::new();
    std::fs::create_dir_all(&empty.0).unwrap();
    match IssuingCa::load(&empty.0) {
        Err(CaError::Incomplete(path)) => assert!(path.ends_with("root.pem"), "{path:?}"),
        other => panic!("an empty directory must be refused: {other:?}"),
    }
    let left: Vec<_> = std::fs::read_dir(&empty.0).unwrap().collect();
    assert!(left.is_empty(), "the signer created files: {left:?}");

    let key = dir.0.join("intermediate-key.pem");
    for loose in [0o644, 0o604, 0o660] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(loose)).unwrap();
        let refused = IssuingCa::load(&dir.0).unwrap_err();
        assert!(
            matches!(refused, CaError::LooseKey { mode, .. } if mode == loose),
            "{loose:o}: {refused}"
        );
        assert!(refused.to_string().contains("chmod 600"), "{refused}");
    }
    // Group-readable only, as a Kubernetes Secret is mounted: loaded.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o440)).unwrap();
    IssuingCa::load(&dir.0).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    let other = TempDir::new();
    let stranger = CaHierarchy::load_or_create(&other.0).unwrap();
    std::fs::write(dir.0.join("root.pem"), stranger.root.cert.to_pem().unwrap()).unwrap();
    assert!(matches!(
        IssuingCa::load(&dir.0),
        Err(CaError::Inconsistent(_))
    ));
    std::fs::remove_file(&key).unwrap();
    match IssuingCa::load(&dir.0) {
        Err(CaError::Incomplete(path)) => {
            assert!(path.ends_with("intermediate-key.pem"), "{path:?}")
        }
        other => panic!("a missing key must be named: {other:?}"),
    }
}

/// The all-in-one loads its own CA the same way: a loose key file is
/// refused, not used.
#[test]
fn load_or_create_refuses_a_key_file_others_can_read() {
    let dir = TempDir::new();
    CaHierarchy::load_or_create(&dir.0).unwrap();
    let root_key = dir.0.join("root-key.pem");
    std::fs::set_permissions(&root_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        CaHierarchy::load_or_create(&dir.0),
        Err(signer::ca::CaError::LooseKey { .. })
    ));
}
