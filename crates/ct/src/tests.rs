use openssl::sha::sha256;
use x509_parser::certificate::TbsCertificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::test_util::{CtMarker, TestCa, TestLeaf, raw_extension};
use crate::*;

fn sample_sct(extensions: &[u8]) -> Sct {
    Sct {
        version: 0,
        log_id: [7; 32],
        timestamp: 1_700_000_000_123,
        extensions: extensions.to_vec(),
        hash_alg: HASH_SHA256,
        sig_alg: SIG_ECDSA,
        signature: (0..71).collect(),
    }
}

/// A CA, a leaf template and the precert built from it.
fn precert() -> (TestCa, TestLeaf, Vec<u8>) {
    let ca = TestCa::new("Kiln Test CA").unwrap();
    let leaf = TestLeaf::new(&["example.com", "www.example.com"]).unwrap();
    let der = leaf.precert_der(&ca).unwrap();
    (ca, leaf, der)
}

fn tbs_of(cert_der: &[u8]) -> Vec<u8> {
    let (_, cert) = X509Certificate::from_der(cert_der).unwrap();
    cert.tbs_certificate.as_ref().to_vec()
}

#[test]
fn sct_tls_round_trip() {
    for ext in [&b""[..], b"\x01\x02\x03"] {
        let sct = sample_sct(ext);
        let bytes = sct.to_tls_bytes().unwrap();
        assert_eq!(bytes.len(), 1 + 32 + 8 + 2 + ext.len() + 4 + 71);
        assert_eq!(Sct::from_tls_bytes(&bytes).unwrap(), sct);
        assert!(Sct::from_tls_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            Sct::from_tls_bytes(&trailing),
            Err(CtError::Tls(_))
        ));
        let mut v2 = bytes;
        v2[0] = 1;
        assert!(matches!(
            Sct::from_tls_bytes(&v2),
            Err(CtError::UnsupportedVersion(1))
        ));
    }
    let too_long = sample_sct(&vec![0; 70_000]);
    assert!(matches!(
        too_long.to_tls_bytes(),
        Err(CtError::TooLong { .. })
    ));
}

#[test]
fn add_chain_json_round_trip() {
    let sct = sample_sct(b"\xaa");
    let resp = AddChainResponse::try_from(&sct).unwrap();
    let json = serde_json::to_string(&resp).unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    for key in ["sct_version", "id", "timestamp", "extensions", "signature"] {
        assert!(value.get(key).is_some(), "{key} missing from {json}");
    }
    let back: AddChainResponse = serde_json::from_str(&json).unwrap();
    assert_eq!(Sct::try_from(&back).unwrap(), sct);

    let short_id = AddChainResponse {
        id: "AAAA".into(),
        ..resp.clone()
    };
    assert!(Sct::try_from(&short_id).is_err());
    let bad_b64 = AddChainResponse {
        signature: "!!".into(),
        ..resp
    };
    assert!(matches!(Sct::try_from(&bad_b64), Err(CtError::Base64(_))));

    let req = AddChainRequest::from_der_chain(&[b"leaf".to_vec(), b"issuer".to_vec()]);
    assert_eq!(
        req.decode_chain().unwrap(),
        [b"leaf".to_vec(), b"issuer".to_vec()]
    );
}

#[test]
fn sct_list_extension_round_trips_through_openssl_and_x509_parser() {
    let (ca, leaf, precert) = precert();
    let tbs = tbs_without_extension(&precert, POISON_OID).unwrap();
    let ikh = issuer_key_hash(&ca.der().unwrap()).unwrap();
    // Three real SCTs (~120 bytes each) make the OCTET STRING need a two-byte long-form length.
    let scts: Vec<Sct> = (0..3)
        .map(|i| {
            LogSigner::generate()
                .unwrap()
                .sign_precert(1_700_000_000_000 + i, &ikh, &tbs, b"")
                .unwrap()
        })
        .collect();
    let der = encode_sct_list_extension(&scts).unwrap();
    assert_eq!(der[0], 0x04);
    assert_eq!(der[1], 0x82, "expected a two-byte long-form length");
    assert_eq!(decode_sct_list_extension(&der).unwrap(), scts);

    let cert = leaf.build(&ca, CtMarker::SctList(&der)).unwrap();
    let cert_der = cert.to_der().unwrap();
    assert_eq!(scts_from_certificate(&cert_der).unwrap(), scts);
    assert!(scts_from_certificate(&precert).unwrap().is_empty());

    // x509-parser's own SCT parser must see the same SCTs.
    let (_, parsed) = X509Certificate::from_der(&cert_der).unwrap();
    let ext = parsed
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == SCT_LIST_OID)
        .unwrap();
    assert!(!ext.critical);
    let ParsedExtension::SCT(list) = ext.parsed_extension() else {
        panic!(
            "x509-parser did not parse the SCT list: {:?}",
            ext.parsed_extension()
        );
    };
    assert_eq!(list.len(), scts.len());
    for (theirs, ours) in list.iter().zip(&scts) {
        assert_eq!(theirs.version.0, ours.version);
        assert_eq!(theirs.id.key_id, &ours.log_id);
        assert_eq!(theirs.timestamp, ours.timestamp);
        assert_eq!(theirs.extensions.0, &ours.extensions[..]);
        assert_eq!(theirs.signature.hash_alg_id, ours.hash_alg);
        assert_eq!(theirs.signature.sign_alg_id, ours.sig_alg);
        assert_eq!(theirs.signature.data, &ours.signature[..]);
    }
    // OpenSSL decodes the list too when printing.
    let text = String::from_utf8(cert.to_text().unwrap()).unwrap();
    assert_eq!(
        text.matches("Signed Certificate Timestamp:").count(),
        3,
        "{text}"
    );
}

#[test]
fn sct_list_decoding_rejects_garbage() {
    assert!(decode_sct_list_extension(&[]).is_err());
    assert!(decode_sct_list_extension(&[0x05, 0x00]).is_err());
    assert!(decode_sct_list_extension(&[0x04, 0x02, 0x00, 0x05]).is_err());
    let good = encode_sct_list_extension(&[sample_sct(b"")]).unwrap();
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(decode_sct_list_extension(&trailing).is_err());
}

#[test]
fn tbs_without_poison_is_the_tbs_openssl_builds_without_it() {
    let (ca, leaf, precert) = precert();
    let tbs = tbs_without_extension(&precert, POISON_OID).unwrap();

    // It parses as a complete TBSCertificate, without the poison but with everything else.
    let (rest, parsed) = TbsCertificate::from_der(&tbs).unwrap();
    assert!(rest.is_empty());
    let oids: Vec<String> = parsed
        .extensions()
        .iter()
        .map(|e| e.oid.to_id_string())
        .collect();
    assert!(!oids.iter().any(|o| o == POISON_OID));
    let (_, original) = X509Certificate::from_der(&precert).unwrap();
    let original_oids: Vec<String> = original
        .extensions()
        .iter()
        .map(|e| e.oid.to_id_string())
        .filter(|o| o != POISON_OID)
        .collect();
    assert_eq!(oids, original_oids);
    assert_eq!(oids.len(), 5);

    // Byte-identical to what OpenSSL encodes for the same certificate without the poison, and
    // to the final certificate's TBS without its SCT list.
    let plain = leaf.build(&ca, CtMarker::None).unwrap().to_der().unwrap();
    assert_eq!(tbs, tbs_of(&plain));
    let sct_ext = encode_sct_list_extension(&[sample_sct(b"")]).unwrap();
    let final_der = leaf
        .build(&ca, CtMarker::SctList(&sct_ext))
        .unwrap()
        .to_der()
        .unwrap();
    assert_eq!(
        tbs_without_extension(&final_der, SCT_LIST_OID).unwrap(),
        tbs
    );
    assert!(tbs_matches_precert(&final_der, &precert).unwrap());

    let other = TestLeaf::new(&["example.com"]).unwrap();
    let other_final = other
        .build(&ca, CtMarker::SctList(&sct_ext))
        .unwrap()
        .to_der()
        .unwrap();
    assert!(!tbs_matches_precert(&other_final, &precert).unwrap());

    assert!(matches!(
        tbs_without_extension(&plain, POISON_OID),
        Err(CtError::ExtensionNotFound(_))
    ));
    assert!(tbs_without_extension(&precert[..precert.len() - 1], POISON_OID).is_err());
    assert!(tbs_without_extension(&precert, "not an oid").is_err());
}

/// Builds a minimal certificate whose only extensions are `exts`.
fn cert_with_extensions(ca: &TestCa, exts: &[(&str, bool, &[u8])]) -> Vec<u8> {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    let mut b = openssl::x509::X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(ca.cert.subject_name()).unwrap();
    b.set_issuer_name(ca.cert.subject_name()).unwrap();
    b.set_pubkey(&ca.key).unwrap();
    b.set_not_before(&Asn1Time::from_unix(1_700_000_000).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(1_800_000_000).unwrap())
        .unwrap();
    for (oid, critical, value) in exts {
        b.append_extension(raw_extension(oid, *critical, value).unwrap())
            .unwrap();
    }
    b.sign(&ca.key, MessageDigest::sha256()).unwrap();
    b.build().to_der().unwrap()
}

#[test]
fn removing_the_only_extension_drops_the_extensions_field() {
    let ca = TestCa::new("CA").unwrap();
    let only_poison = cert_with_extensions(&ca, &[(POISON_OID, true, &POISON_EXTENSION_DER)]);
    let none = cert_with_extensions(&ca, &[]);
    let tbs = tbs_without_extension(&only_poison, POISON_OID).unwrap();
    assert_eq!(tbs, tbs_of(&none));
    assert_eq!(
        TbsCertificate::from_der(&tbs).unwrap().1.extensions().len(),
        0
    );
}

#[test]
fn precertificate_detection() {
    let (ca, leaf, precert) = precert();
    assert!(is_precertificate(&precert).unwrap());
    let plain = leaf.build(&ca, CtMarker::None).unwrap().to_der().unwrap();
    assert!(!is_precertificate(&plain).unwrap());
    let ext = find_extension(&precert, POISON_OID).unwrap().unwrap();
    assert!(ext.critical);
    assert_eq!(ext.value, POISON_EXTENSION_DER);

    let non_critical = cert_with_extensions(&ca, &[(POISON_OID, false, &POISON_EXTENSION_DER)]);
    assert!(matches!(
        is_precertificate(&non_critical),
        Err(CtError::BadPoison(_))
    ));
    let not_null = cert_with_extensions(&ca, &[(POISON_OID, true, &[0x04, 0x00])]);
    assert!(matches!(
        is_precertificate(&not_null),
        Err(CtError::BadPoison(_))
    ));
    let twice = cert_with_extensions(
        &ca,
        &[
            (POISON_OID, true, &POISON_EXTENSION_DER),
            (POISON_OID, true, &POISON_EXTENSION_DER),
        ],
    );
    assert!(matches!(
        is_precertificate(&twice),
        Err(CtError::DuplicateExtension(_))
    ));
    assert!(matches!(
        tbs_without_extension(&twice, POISON_OID),
        Err(CtError::DuplicateExtension(_))
    ));
    assert!(is_precertificate(b"\x30\x00").is_err());
}

#[test]
fn issuer_key_hash_is_sha256_of_spki() {
    let ca = TestCa::new("CA").unwrap();
    let spki = ca.key.public_key_to_der().unwrap();
    let der = ca.der().unwrap();
    assert_eq!(subject_public_key_info(&der).unwrap(), &spki[..]);
    assert_eq!(issuer_key_hash(&der).unwrap(), sha256(&spki));
    assert_eq!(log_id(&spki), sha256(&spki));
}

#[test]
fn sign_and_verify_precert_and_x509_entries() {
    let (ca, leaf, precert) = precert();
    let signer = LogSigner::generate().unwrap();
    let spki = signer.public_key_der().to_vec();
    let ikh = issuer_key_hash(&ca.der().unwrap()).unwrap();
    let tbs = tbs_without_extension(&precert, POISON_OID).unwrap();

    let sct = signer
        .sign_precert(1_700_000_000_000, &ikh, &tbs, b"")
        .unwrap();
    assert_eq!(
        (sct.hash_alg, sct.sig_alg, sct.log_id),
        (4, 3, log_id(&spki))
    );
    let data = precert_signed_data(sct.timestamp, &ikh, &tbs, &sct.extensions).unwrap();
    verify_sct(&sct, &spki, &data).unwrap();

    // Tampered entry: another TBS byte, another issuer, another timestamp.
    let mut bad_tbs = tbs.clone();
    let last = bad_tbs.len() - 1;
    bad_tbs[last] ^= 1;
    let tampered = [
        precert_signed_data(sct.timestamp, &ikh, &bad_tbs, b"").unwrap(),
        precert_signed_data(sct.timestamp, &[0; 32], &tbs, b"").unwrap(),
        precert_signed_data(sct.timestamp + 1, &ikh, &tbs, b"").unwrap(),
    ];
    for data in &tampered {
        assert!(matches!(
            verify_sct(&sct, &spki, data),
            Err(CtError::BadSignature)
        ));
    }

    // Wrong key: the log ID gives it away; with a forged log ID the signature does.
    let other = LogSigner::generate().unwrap();
    assert!(matches!(
        verify_sct(&sct, other.public_key_der(), &data),
        Err(CtError::LogIdMismatch)
    ));
    let forged = Sct {
        log_id: other.log_id(),
        ..sct.clone()
    };
    assert!(matches!(
        verify_sct(&forged, other.public_key_der(), &data),
        Err(CtError::BadSignature)
    ));
    let garbled = Sct {
        signature: vec![0x30, 0x00],
        ..sct.clone()
    };
    assert!(matches!(
        verify_sct(&garbled, &spki, &data),
        Err(CtError::BadSignature)
    ));
    let rsa_claim = Sct {
        sig_alg: SIG_RSA,
        ..sct.clone()
    };
    assert!(matches!(
        verify_sct(&rsa_claim, &spki, &data),
        Err(CtError::UnsupportedAlgorithm { .. })
    ));

    // x509 entries, and an SCT that survives the trip through the final certificate.
    let sct_ext = encode_sct_list_extension(std::slice::from_ref(&sct)).unwrap();
    let final_der = leaf
        .build(&ca, CtMarker::SctList(&sct_ext))
        .unwrap()
        .to_der()
        .unwrap();
    for embedded in scts_from_certificate(&final_der).unwrap() {
        let data = precert_signed_data(embedded.timestamp, &ikh, &tbs, b"").unwrap();
        verify_sct(&embedded, &spki, &data).unwrap();
    }
    let x509_sct = signer.sign_x509(42, &final_der, b"\x00\x01").unwrap();
    let data = x509_signed_data(42, &final_der, b"\x00\x01").unwrap();
    verify_sct(&x509_sct, &spki, &data).unwrap();
    let wrong_ext = x509_signed_data(42, &final_der, b"").unwrap();
    assert!(verify_sct(&x509_sct, &spki, &wrong_ext).is_err());
}

#[test]
fn signer_refuses_non_p256_keys() {
    let rsa = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    assert!(matches!(
        LogSigner::new(rsa),
        Err(CtError::UnsupportedKey(_))
    ));
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::SECP384R1).unwrap();
    let p384 =
        openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap();
    assert!(matches!(
        LogSigner::new(p384),
        Err(CtError::UnsupportedKey(_))
    ));
}

#[test]
fn signed_tree_heads_verify() {
    let signer = LogSigner::generate().unwrap();
    let leaves = [leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")];
    let root = merkle_tree_hash(&leaves);
    let sth = signer.sign_tree_head(1_700_000_000_000, 3, &root).unwrap();
    assert_eq!(sth.root_hash().unwrap(), root);
    verify_sth(&sth, signer.public_key_der()).unwrap();
    let lie = GetSthResponse {
        tree_size: 4,
        ..sth.clone()
    };
    assert!(matches!(
        verify_sth(&lie, signer.public_key_der()),
        Err(CtError::BadSignature)
    ));
}
