//! Finalize's CSR checks, `api::csr::check_csr`, on arbitrary DER (the
//! target base64url-encodes it as the finalize payload carries it). The
//! orders are the seeds' names: {a.example, b.example}, or, when those do
//! not match, {a.example, 192.0.2.1}. Properties: every refusal is
//! `badCSR` (never an internal error); an accepted CSR gives back its own
//! DER, unique names equal to the order's, and a key with a
//! blocklist digest.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::{Identifier, ProblemKind};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static ACCOUNT_SPKI: LazyLock<Vec<u8>> =
    LazyLock::new(|| kiln_fuzz::OLD_KEY.public_key_spki_der().to_vec());

fn order(names: &[&str]) -> Vec<Identifier> {
    names
        .iter()
        .map(|n| Identifier::from_authz_value(n))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let csr = URL_SAFE_NO_PAD.encode(data);
    let weak = pkix::DebianWeakKeys::default();
    let check = |names: &[&str]| {
        let result = api::csr::check_csr(&csr, &order(names), &ACCOUNT_SPKI, &weak);
        match &result {
            Ok(checked) => {
                assert_eq!(checked.der, data);
                let mut got = checked.names.clone();
                got.sort();
                got.dedup();
                assert_eq!(got.len(), checked.names.len(), "names are unique");
                let mut want: Vec<&str> = names.to_vec();
                want.sort();
                assert_eq!(got, want);
                api::csr::key_digest(&checked.public_key_spki_der)
                    .expect("an accepted CSR key has a blocklist digest");
            }
            Err(problem) => assert_eq!(problem.kind, ProblemKind::BadCsr, "{problem:?}"),
        }
        result
    };
    if let Err(problem) = check(&["a.example", "b.example"])
        && problem.detail.starts_with("CSR names must equal")
    {
        let _ = check(&["192.0.2.1", "a.example"]);
    }
});
