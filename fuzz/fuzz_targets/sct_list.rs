//! Certificate Transparency decoding in `ct`: the embedded SCT list
//! extension (`decode_sct_list_extension`), one TLS-encoded SCT
//! (`Sct::from_tls_bytes`), the JSON `add-chain` response, SCT signature
//! checks (`verify_sct`), and the DER walker over whole certificates
//! (`scts_from_certificate`, `is_precertificate`, `tbs_without_extension`,
//! `tbs_matches_precert`, `subject_public_key_info`) and OIDs
//! (`encode_oid`). Properties: the decoders take only canonical encodings,
//! so re-encoding gives back the input byte for byte; an SCT's JSON form
//! reads back as the same SCT; a TBS with an extension removed is one DER
//! SEQUENCE.
#![no_main]

use ct::{AddChainResponse, Sct};
use kiln_fuzz::LOG_SPKI;
use libfuzzer_sys::fuzz_target;

fn check_sct(sct: &Sct) {
    let json = AddChainResponse::try_from(sct).expect("a decoded SCT has a JSON form");
    assert_eq!(&Sct::try_from(&json).expect("its JSON form decodes"), sct);
    // The seeds' SCTs are the fixed log's, signed over an empty x509 entry.
    let signed =
        ct::x509_signed_data(sct.timestamp, b"", &sct.extensions).expect("decoded extensions fit");
    let _ = ct::verify_sct(sct, &LOG_SPKI, &signed);
}

/// Whether `der` is exactly one DER SEQUENCE (definite length, no trailing bytes).
fn one_sequence(der: &[u8]) -> bool {
    let (Some(&0x30), Some(&first)) = (der.first(), der.get(1)) else {
        return false;
    };
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || der.len() < 2 + n {
            return false;
        }
        let len = der[2..2 + n]
            .iter()
            .fold(0, |a, &b| (a << 8) | usize::from(b));
        (len, 2 + n)
    };
    der.len() == header + len
}

fuzz_target!(|data: &[u8]| {
    if let Ok(scts) = ct::decode_sct_list_extension(data) {
        let encoded = ct::encode_sct_list_extension(&scts).expect("decoded SCTs re-encode");
        assert_eq!(encoded, data, "only canonical SCT lists decode");
        scts.iter().for_each(check_sct);
    }
    if let Ok(sct) = Sct::from_tls_bytes(data) {
        assert_eq!(sct.to_tls_bytes().expect("a decoded SCT re-encodes"), data);
        check_sct(&sct);
    }
    if let Ok(json) = serde_json::from_slice::<AddChainResponse>(data)
        && let Ok(sct) = Sct::try_from(&json)
    {
        check_sct(&sct);
    }
    if let Ok(scts) = ct::scts_from_certificate(data) {
        scts.iter().for_each(check_sct);
    }
    let _ = ct::is_precertificate(data);
    for oid in [ct::POISON_OID, ct::SCT_LIST_OID] {
        if let Ok(tbs) = ct::tbs_without_extension(data, oid) {
            assert!(one_sequence(&tbs), "a TBS without {oid} is one SEQUENCE");
        }
    }
    let _ = ct::tbs_matches_precert(data, data);
    if let Ok(spki) = ct::subject_public_key_info(data) {
        assert_eq!(ct::issuer_key_hash(data).ok(), Some(ct::log_id(spki)));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ct::encode_oid(text);
    }
});
