use super::*;
use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509, X509Extension, X509NameBuilder};

pub(crate) fn p256() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// Which CT extension a test leaf carries, and where.
pub(crate) enum Ct<'a> {
    /// The critical poison, second of three extensions.
    Poison,
    /// This SCT list value, second of three.
    Scts(&'a [u8]),
    /// This SCT list value, last of three.
    SctsLast(&'a [u8]),
}

fn raw_extension(oid: &str, critical: bool, value: &[u8]) -> X509Extension {
    let oid = Asn1Object::from_str(oid).unwrap();
    let value = Asn1OctetString::new_from_bytes(value).unwrap();
    X509Extension::new_from_der(&oid, critical, &value).unwrap()
}

/// A leaf for `cn` and `names`, serial 0x01ab…, issued by `issuer_key`
/// at unix time 1_700_000_000 for one day.
pub(crate) fn leaf(
    cn: &str,
    names: &[&str],
    key: &PKey<Private>,
    issuer_key: &PKey<Private>,
    ct: Ct<'_>,
) -> Vec<u8> {
    let mut builder = X509::builder().unwrap();
    builder.set_version(2).unwrap();
    let serial = BigNum::from_hex_str("01ab2233445566778899aabbccddeeff0011").unwrap();
    builder
        .set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    builder.set_subject_name(&name).unwrap();
    let mut issuer = X509NameBuilder::new().unwrap();
    issuer.append_entry_by_text("CN", "Test CA").unwrap();
    builder.set_issuer_name(&issuer.build()).unwrap();
    builder
        .set_not_before(&Asn1Time::from_unix(1_700_000_000).unwrap())
        .unwrap();
    builder
        .set_not_after(&Asn1Time::from_unix(1_700_086_399).unwrap())
        .unwrap();
    builder.set_pubkey(key).unwrap();
    let mut san = SubjectAlternativeName::new();
    for n in names {
        match n.parse::<std::net::IpAddr>() {
            Ok(_) => san.ip(n),
            Err(_) => san.dns(n),
        };
    }
    let san = san.build(&builder.x509v3_context(None, None)).unwrap();
    let bc = BasicConstraints::new().critical().build().unwrap();
    let poison = || raw_extension(ct::POISON_OID, true, &[0x05, 0x00]);
    let scts = |v: &[u8]| raw_extension(ct::SCT_LIST_OID, false, v);
    let extensions = match ct {
        Ct::Poison => [san, poison(), bc],
        Ct::Scts(v) => [san, scts(v), bc],
        Ct::SctsLast(v) => [san, bc, scts(v)],
    };
    for e in extensions {
        builder.append_extension(e).unwrap();
    }
    builder.sign(issuer_key, MessageDigest::sha256()).unwrap();
    builder.build().to_der().unwrap()
}

/// An SCT list extension value (an OCTET STRING around a TLS list).
pub(crate) const SCT_VALUE: &[u8] = &[0x04, 0x06, 0x00, 0x04, 0x00, 0x02, 0xaa, 0xbb];

fn expected_final(precert: &[u8], final_der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let pre = Cert::parse(precert).unwrap();
    let fin = Cert::parse(final_der).unwrap();
    let sct = fin.extension(oid::CT_SCT_LIST).unwrap().unwrap();
    (
        tbs_with_poison_replaced(pre.tbs, sct.raw).unwrap(),
        fin.tbs.to_vec(),
    )
}

#[test]
fn a_final_certificate_is_its_precertificate_with_the_poison_swapped() {
    let (key, ca) = (p256(), p256());
    let precert = leaf("a.test", &["a.test", "b.test"], &key, &ca, Ct::Poison);
    let fin = leaf(
        "a.test",
        &["a.test", "b.test"],
        &key,
        &ca,
        Ct::Scts(SCT_VALUE),
    );
    let (expected, actual) = expected_final(&precert, &fin);
    assert_eq!(expected, actual);

    // Anything else different is found, and named.
    let other_subject = leaf(
        "c.test",
        &["a.test", "b.test"],
        &key,
        &ca,
        Ct::Scts(SCT_VALUE),
    );
    let (expected, actual) = expected_final(&precert, &other_subject);
    assert_ne!(expected, actual);
    assert_eq!(tbs_difference(&expected, &actual), "its subject differs");
    let other_key = leaf(
        "a.test",
        &["a.test", "b.test"],
        &p256(),
        &ca,
        Ct::Scts(SCT_VALUE),
    );
    let (expected, actual) = expected_final(&precert, &other_key);
    assert_eq!(
        tbs_difference(&expected, &actual),
        "its subjectPublicKeyInfo differs"
    );
    // The SCT list must take the poison's place, not another.
    let moved = leaf(
        "a.test",
        &["a.test", "b.test"],
        &key,
        &ca,
        Ct::SctsLast(SCT_VALUE),
    );
    let (expected, actual) = expected_final(&precert, &moved);
    assert_eq!(
        tbs_difference(&expected, &actual),
        "its extension #2 differs"
    );
    // One byte changed anywhere in the final TBS.
    let mut flipped = fin.clone();
    let at = flipped.len() / 3;
    flipped[at] ^= 0x01;
    if let Ok(cert) = Cert::parse(&flipped) {
        let (expected, _) = expected_final(&precert, &fin);
        assert_ne!(expected, cert.tbs);
    }
    // A final certificate still carrying the poison is no swap at all.
    assert!(tbs_with_poison_replaced(Cert::parse(&fin).unwrap().tbs, &[]).is_err());
}

#[test]
fn fields_names_and_times_are_read() {
    let (key, ca) = (p256(), p256());
    let der = leaf(
        "a.test",
        &["A.test", "*.b.test", "127.0.0.1"],
        &key,
        &ca,
        Ct::Poison,
    );
    let cert = Cert::parse(&der).unwrap();
    assert_eq!(to_hex(cert.serial), "01ab2233445566778899aabbccddeeff0011");
    assert_eq!(
        (cert.not_before, cert.not_after),
        (1_700_000_000, 1_700_086_399)
    );
    assert_eq!(
        cert.san_names().unwrap(),
        ["a.test", "*.b.test", "127.0.0.1"]
    );
    assert_eq!(cert.spki, key.public_key_to_der().unwrap());
    let poison = cert.extension(oid::CT_POISON).unwrap().unwrap();
    assert!(poison.critical);
    assert_eq!(poison.value, [0x05, 0x00]);
    assert_eq!(oid_text(oid::CT_POISON), ct::POISON_OID);
    assert!(cert.ca_issuers_urls().unwrap().is_empty());
    // Both time forms, and the years around UTCTime's pivot.
    let utc = |s: &str| {
        time(
            &read_tlv(&[&[0x17, s.len() as u8][..], s.as_bytes()].concat())
                .unwrap()
                .0,
        )
    };
    assert_eq!(utc("700101000000Z"), Ok(0));
    assert_eq!(utc("491231235959Z"), Ok(2_524_607_999));
    assert!(utc("700101000000").is_err());
    assert!(utc("701301000000Z").is_err());
    let generalized = [&[0x18, 15][..], b"20500101000000Z"].concat();
    assert_eq!(time(&read_tlv(&generalized).unwrap().0), Ok(2_524_608_000));
}

#[test]
fn malformed_der_is_an_error_not_a_panic() {
    let (key, ca) = (p256(), p256());
    let der = leaf("a.test", &["a.test"], &key, &ca, Ct::Poison);
    for cut in [0, 1, 2, 10, der.len() / 2, der.len() - 1] {
        assert!(Cert::parse(&der[..cut]).is_err(), "cut at {cut}");
    }
    let mut trailing = der.clone();
    trailing.push(0);
    assert!(Cert::parse(&trailing).is_err());
    // A long-form length that fits in short form is not DER.
    assert!(read_tlv(&[0x04, 0x81, 0x01, 0x00]).is_err());
    assert!(read_tlv(&[0x04, 0x80]).is_err());
}
