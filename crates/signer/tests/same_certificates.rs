//! The DER builders issue byte for byte the certificates that OpenSSL's
//! `X509Builder` made of the same requests before them: the builder code
//! they replaced is kept here as the reference, and every TBSCertificate
//! (signatures are randomized, so only the TBS can be compared) must match
//! it, for every key type, subject shape, time encoding and issuer key type.

use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, PointConversionForm};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509Extension, X509Name};
use signer::ca::{CaHierarchy, Issuer};
use signer::certificate::{
    CT_POISON_OID, CT_SCT_LIST_OID, LeafRequest, Profile, final_certificate_der, precertificate_der,
};
use signer::serial::new_serial;
use x509_parser::prelude::*;

const AIA_URL: &str = "http://kiln.test/ca/intermediate.der";
const CRL_URL: &str = "http://kiln.test/ca/crl";

fn profile() -> Profile {
    Profile::new(AIA_URL, CRL_URL)
}

fn ec_key(nid: Nid) -> PKey<Private> {
    PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(nid).unwrap()).unwrap()).unwrap()
}

fn rsa_key(bits: u32) -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(bits).unwrap()).unwrap()
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        l if l < 0x80 => out.push(l as u8),
        l if l < 0x100 => out.extend([0x81, l as u8]),
        l => out.extend([0x82, (l >> 8) as u8, l as u8]),
    }
    out.extend_from_slice(content);
    out
}

fn tbs(cert_der: &[u8]) -> Vec<u8> {
    let (_, cert) = X509Certificate::from_der(cert_der).unwrap();
    cert.tbs_certificate.as_ref().to_vec()
}

fn request(spki: Vec<u8>, names: &[&str], not_before: i64, not_after: i64) -> LeafRequest {
    LeafRequest {
        serial: new_serial(0x01).unwrap(),
        dns_names: names.iter().map(|n| n.to_string()).collect(),
        ip_addresses: vec![],
        public_key_der: spki,
        not_before,
        not_after,
    }
}

fn der_extension(oid: &str, critical: bool, value: &[u8]) -> X509Extension {
    let oid = Asn1Object::from_str(oid).unwrap();
    let value = Asn1OctetString::new_from_bytes(value).unwrap();
    X509Extension::new_from_der(&oid, critical, &value).unwrap()
}

/// The precertificate as the `X509Builder` code before the DER builders
/// assembled it, signed by the issuer.
fn reference_precertificate(issuer: &Issuer, req: &LeafRequest) -> Vec<u8> {
    let mut names: Vec<&str> = Vec::new();
    for name in &req.dns_names {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    let shortest = |wildcard: bool| {
        names
            .iter()
            .filter(move |n| n.starts_with("*.") == wildcard)
            .min_by_key(|n| n.len())
    };
    let common_name = shortest(false)
        .or_else(|| shortest(true))
        .filter(|n| n.len() <= 64);
    let mut subject = X509Name::builder().unwrap();
    if let Some(cn) = common_name {
        subject.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    }
    let subject = subject.build();
    let public_key = PKey::public_key_from_der(&req.public_key_der).unwrap();
    let is_rsa = public_key.rsa().is_ok();

    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let serial = BigNum::from_slice(&req.serial).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_issuer_name(issuer.cert.subject_name()).unwrap();
    b.set_subject_name(&subject).unwrap();
    b.set_not_before(&Asn1Time::from_unix(req.not_before).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(req.not_after).unwrap())
        .unwrap();
    b.set_pubkey(&public_key).unwrap();

    let mut key_usage = KeyUsage::new();
    key_usage.critical().digital_signature();
    if is_rsa {
        key_usage.key_encipherment();
    }
    let mut san = SubjectAlternativeName::new();
    if common_name.is_none() {
        san.critical();
    }
    for name in &names {
        san.dns(name);
    }
    let aia = der(
        0x30,
        &der(
            0x30,
            &[
                der(0x06, &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02]),
                der(0x86, AIA_URL.as_bytes()),
            ]
            .concat(),
        ),
    );
    let crl_dp = der(
        0x30,
        &der(0x30, &der(0xa0, &der(0xa0, &der(0x86, CRL_URL.as_bytes())))),
    );
    let policies = der(
        0x30,
        &der(0x30, &der(0x06, &[0x67, 0x81, 0x0c, 0x01, 0x02, 0x01])),
    );
    let extensions = {
        let ctx = b.x509v3_context(Some(&issuer.cert), None);
        [
            key_usage.build().unwrap(),
            ExtendedKeyUsage::new().server_auth().build().unwrap(),
            BasicConstraints::new().critical().build().unwrap(),
            SubjectKeyIdentifier::new().build(&ctx).unwrap(),
            AuthorityKeyIdentifier::new()
                .keyid(true)
                .build(&ctx)
                .unwrap(),
            der_extension("1.3.6.1.5.5.7.1.1", false, &aia),
            san.build(&ctx).unwrap(),
            der_extension("2.5.29.32", false, &policies),
            der_extension("2.5.29.31", false, &crl_dp),
            der_extension(CT_POISON_OID, true, &[0x05, 0x00]),
        ]
    };
    for extension in extensions {
        b.append_extension(extension).unwrap();
    }
    b.sign(issuer.key.as_ref().unwrap(), MessageDigest::sha256())
        .unwrap();
    b.build().to_der().unwrap()
}

/// The final certificate as the `X509Builder` code before the DER surgery
/// assembled it from a precertificate.
fn reference_final_certificate(issuer: &Issuer, precert_der: &[u8], sct_list: &[u8]) -> Vec<u8> {
    let precert = X509::from_der(precert_der).unwrap();
    let (_, parsed) = X509Certificate::from_der(precert_der).unwrap();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(precert.serial_number()).unwrap();
    b.set_issuer_name(precert.issuer_name()).unwrap();
    b.set_subject_name(precert.subject_name()).unwrap();
    b.set_not_before(precert.not_before()).unwrap();
    b.set_not_after(precert.not_after()).unwrap();
    b.set_pubkey(&precert.public_key().unwrap()).unwrap();
    for ext in parsed.extensions() {
        let oid = ext.oid.to_id_string();
        let ext = if oid == CT_POISON_OID {
            der_extension(CT_SCT_LIST_OID, false, sct_list)
        } else {
            der_extension(&oid, ext.critical, ext.value)
        };
        b.append_extension(ext).unwrap();
    }
    b.sign(issuer.key.as_ref().unwrap(), MessageDigest::sha256())
        .unwrap();
    b.build().to_der().unwrap()
}

fn sct_list_extension() -> Vec<u8> {
    let sct = [0x5a_u8; 118];
    let mut list = ((sct.len() + 2) as u16).to_be_bytes().to_vec();
    list.extend((sct.len() as u16).to_be_bytes());
    list.extend(sct);
    der(0x04, &list)
}

/// Both builders on one request: the same TBS, precertificate and final.
fn assert_same(issuer: &Issuer, req: &LeafRequest, profile: &Profile, label: &str) {
    let ours = precertificate_der(issuer, req, profile).unwrap();
    let reference = reference_precertificate(issuer, req);
    assert_eq!(tbs(&ours), tbs(&reference), "{label}: precertificate TBS");
    assert_eq!(
        X509Certificate::from_der(&ours)
            .unwrap()
            .1
            .signature_algorithm,
        X509Certificate::from_der(&reference)
            .unwrap()
            .1
            .signature_algorithm,
        "{label}: signature algorithm"
    );
    let sct_list = sct_list_extension();
    let ours = final_certificate_der(issuer, &ours, &sct_list).unwrap();
    let reference = reference_final_certificate(issuer, &reference, &sct_list);
    assert_eq!(tbs(&ours), tbs(&reference), "{label}: final TBS");
    // And both certificates verify under the issuer's certificate.
    let issuer_key = issuer.cert.public_key().unwrap();
    for der in [&ours, &reference] {
        assert!(
            X509::from_der(der).unwrap().verify(&issuer_key).unwrap(),
            "{label}"
        );
    }
}

fn now() -> i64 {
    ::time::OffsetDateTime::now_utc().unix_timestamp()
}

fn compressed_spki(key: &PKey<Private>) -> Vec<u8> {
    let ec = key.ec_key().unwrap();
    let mut ctx = BigNumContext::new().unwrap();
    let point = ec
        .public_key()
        .to_bytes(ec.group(), PointConversionForm::COMPRESSED, &mut ctx)
        .unwrap();
    let algorithm = der(
        0x30,
        &[
            der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
            der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
        ]
        .concat(),
    );
    der(
        0x30,
        &[algorithm, der(0x03, &[&[0][..], &point].concat())].concat(),
    )
}

#[test]
fn every_key_type_and_subject_shape() {
    let ca = CaHierarchy::generate().unwrap();
    let profile = profile();
    let (not_before, not_after) = profile.validity_window(now());
    let long = format!("{}.example.com", "a".repeat(60));
    let p256 = ec_key(Nid::X9_62_PRIME256V1);
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "p256",
            p256.public_key_to_der().unwrap(),
            vec!["www.example.com", "*.example.com", "example.com"],
        ),
        (
            "p256 compressed point",
            compressed_spki(&p256),
            vec!["example.com"],
        ),
        (
            "p384",
            ec_key(Nid::SECP384R1).public_key_to_der().unwrap(),
            vec!["*.example.com"],
        ),
        (
            "rsa2048",
            rsa_key(2048).public_key_to_der().unwrap(),
            vec!["example.com", "example.com", "a.example.com"],
        ),
        (
            "rsa4096",
            rsa_key(4096).public_key_to_der().unwrap(),
            vec!["example.com"],
        ),
        (
            "empty subject",
            p256.public_key_to_der().unwrap(),
            vec![&long, "*.example.com"],
        ),
    ];
    for (label, spki, names) in cases {
        let req = request(spki, &names, not_before, not_after);
        assert_same(&ca.intermediate, &req, &profile, label);
    }
}

/// 2050 and later are GeneralizedTime, before it UTCTime (RFC 5280
/// §4.1.2.5); one certificate can have both.
#[test]
fn both_time_encodings() {
    let ca = CaHierarchy::generate().unwrap();
    let long = Profile {
        validity: std::time::Duration::from_secs(20 * 365 * 86_400),
        ..profile()
    };
    let spki = ec_key(Nid::X9_62_PRIME256V1).public_key_to_der().unwrap();
    // 2044-12-02 to 2054-12-02 (UTCTime, then GeneralizedTime), and 2051 to 2052.
    for (not_before, not_after) in [
        (2_364_249_600, 2_679_782_400),
        (2_556_144_000, 2_587_680_000),
    ] {
        let req = request(spki.clone(), &["example.com"], not_before, not_after);
        assert_same(&ca.intermediate, &req, &long, "GeneralizedTime");
    }
}

/// An RSA issuer key signs sha256WithRSAEncryption, with NULL parameters.
#[test]
fn rsa_issuer() {
    let ca = CaHierarchy::generate().unwrap();
    let key = rsa_key(2048);
    let mut name = X509Name::builder().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, "Kiln RSA Intermediate")
        .unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(7).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(ca.root.cert.subject_name()).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.set_pubkey(&key).unwrap();
    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(Some(&ca.root.cert), None))
        .unwrap();
    b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
        .unwrap();
    b.append_extension(ski).unwrap();
    b.sign(ca.root.key.as_ref().unwrap(), MessageDigest::sha256())
        .unwrap();
    let issuer = Issuer::new(b.build(), key).unwrap();

    let profile = profile();
    let (not_before, not_after) = profile.validity_window(now());
    let spki = ec_key(Nid::X9_62_PRIME256V1).public_key_to_der().unwrap();
    let req = request(spki, &["example.com"], not_before, not_after);
    assert_same(&issuer, &req, &profile, "RSA issuer");
}
