//! Certificate revocation lists (RFC 5280 §5, BR 7.2), written in DER and
//! signed by the issuer like a leaf: the CA's key signs exactly the
//! TBSCertList written here, through the same `IssuerSigner` (a key file
//! or a PKCS#11 token).
//!
//! Kiln's CRLs are partitioned (BR 7.2.2 "sharded"): each names its shard's
//! URL in an Issuing Distribution Point, the same URL a leaf assigned to
//! that shard carries in its CRL Distribution Points, and covers end-entity
//! certificates only.

use super::CertError;
use super::der::{TAG_INTEGER, TAG_SEQUENCE, TAG_URI, der, extension, oid, time, unsigned_integer};
use crate::ca::Issuer;

/// The reasons BR 7.2.2 allows on a CRL entry. `unspecified` is written as
/// no reasonCode at all (the BRs forbid the code itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrlReason {
    Unspecified,
    KeyCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    PrivilegeWithdrawn,
}

impl CrlReason {
    /// From RFC 5280's CRLReason code, as ACME's revokeCert carries it
    /// (RFC 8555 §7.6); `None` for codes the BRs do not allow.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => CrlReason::Unspecified,
            1 => CrlReason::KeyCompromise,
            3 => CrlReason::AffiliationChanged,
            4 => CrlReason::Superseded,
            5 => CrlReason::CessationOfOperation,
            9 => CrlReason::PrivilegeWithdrawn,
            _ => return None,
        })
    }

    pub fn code(self) -> u8 {
        match self {
            CrlReason::Unspecified => 0,
            CrlReason::KeyCompromise => 1,
            CrlReason::AffiliationChanged => 3,
            CrlReason::Superseded => 4,
            CrlReason::CessationOfOperation => 5,
            CrlReason::PrivilegeWithdrawn => 9,
        }
    }
}

/// One revoked certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlEntry {
    /// The serial number's big-endian bytes.
    pub serial: Vec<u8>,
    /// When it was revoked, unix seconds.
    pub revoked_at: i64,
    pub reason: CrlReason,
}

/// What one shard's CRL says.
#[derive(Clone, Debug)]
pub struct CrlRequest<'a> {
    /// The CRL number: greater than any this shard published before
    /// (RFC 5280 §5.2.3), at most 20 octets.
    pub number: u64,
    /// Unix seconds; `next_update` after `this_update`, within the BRs' 10
    /// days (checked here).
    pub this_update: i64,
    pub next_update: i64,
    /// The shard's URL: the Issuing Distribution Point's fullName, equal to
    /// the CRL DP of every certificate the shard covers.
    pub shard_url: &'a str,
    pub entries: &'a [CrlEntry],
}

/// BR 4.9.7: a CRL's nextUpdate at most ten days after its thisUpdate.
pub const MAX_CRL_VALIDITY_SECS: i64 = 10 * 24 * 3600;

const CRL_NUMBER: &[u8] = &[0x55, 0x1d, 0x14];
const REASON_CODE: &[u8] = &[0x55, 0x1d, 0x15];
const ISSUING_DISTRIBUTION_POINT: &[u8] = &[0x55, 0x1d, 0x1c];
const TAG_ENUMERATED: u8 = 0x0a;
/// `[0] EXPLICIT Extensions` of a TBSCertList.
const TAG_CRL_EXTENSIONS: u8 = 0xa0;

/// The signed CRL (DER) of `request`, by `issuer`'s key.
pub fn crl_der(issuer: &Issuer, request: &CrlRequest<'_>) -> Result<Vec<u8>, CertError> {
    let span = request.next_update - request.this_update;
    if !(1..=MAX_CRL_VALIDITY_SECS).contains(&span) {
        return Err(CertError::InvalidRequest(format!(
            "a CRL's nextUpdate must follow its thisUpdate by at most 10 days, not {span} s"
        )));
    }
    let signer = issuer.signer();
    let tbs = tbs_cert_list(signer.algorithm(), signer.name(), signer.key_id(), request)?;
    // CertificateList has Certificate's shape: TBS, algorithm, signature.
    signer.sign(&tbs)
}

fn tbs_cert_list(
    algorithm: &[u8],
    issuer_name: &[u8],
    key_id: &[u8],
    request: &CrlRequest<'_>,
) -> Result<Vec<u8>, CertError> {
    let bad_time = || CertError::InvalidRequest("a CRL time outside years 0-9999".into());
    let mut fields = vec![
        der(TAG_INTEGER, &[1]), // v2
        algorithm.to_vec(),
        issuer_name.to_vec(),
        time(request.this_update).ok_or_else(bad_time)?,
        time(request.next_update).ok_or_else(bad_time)?,
    ];
    // RFC 5280 §5.1.2.6: absent, not empty, when nothing is revoked.
    if !request.entries.is_empty() {
        let mut revoked = Vec::new();
        for entry in request.entries {
            revoked.extend(revoked_certificate(entry).ok_or_else(bad_time)?);
        }
        fields.push(der(TAG_SEQUENCE, &revoked));
    }
    let idp = {
        // IssuingDistributionPoint { distributionPoint [0] { fullName [0]
        // { uniformResourceIdentifier } }, onlyContainsUserCerts [1] TRUE }
        let full_name = der(0xa0, &der(TAG_URI, request.shard_url.as_bytes()));
        let point = der(0xa0, &full_name);
        let only_user_certs = der(0x81, &[0xff]);
        der(TAG_SEQUENCE, &[point, only_user_certs].concat())
    };
    let extensions = [
        // [0] IMPLICIT KeyIdentifier, as in every leaf.
        extension(
            oid::AUTHORITY_KEY_ID,
            false,
            &der(TAG_SEQUENCE, &der(0x80, key_id)),
        ),
        extension(
            CRL_NUMBER,
            false,
            &unsigned_integer(&request.number.to_be_bytes()),
        ),
        extension(ISSUING_DISTRIBUTION_POINT, true, &idp),
    ]
    .concat();
    fields.push(der(TAG_CRL_EXTENSIONS, &der(TAG_SEQUENCE, &extensions)));
    Ok(der(TAG_SEQUENCE, &fields.concat()))
}

fn revoked_certificate(entry: &CrlEntry) -> Option<Vec<u8>> {
    let mut fields = [unsigned_integer(&entry.serial), time(entry.revoked_at)?].concat();
    if entry.reason != CrlReason::Unspecified {
        let code = der(TAG_ENUMERATED, &[entry.reason.code()]);
        let reason = extension(REASON_CODE, false, &code);
        fields.extend(der(TAG_SEQUENCE, &reason));
    }
    Some(der(TAG_SEQUENCE, &fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::CaHierarchy;
    use openssl::x509::X509Crl;

    const NOW: i64 = 1_796_000_000; // 2026-11-29

    fn entries() -> Vec<CrlEntry> {
        vec![
            CrlEntry {
                serial: vec![0x01, 0x80, 0x02],
                revoked_at: NOW - 60,
                reason: CrlReason::KeyCompromise,
            },
            CrlEntry {
                serial: vec![0x7f, 0x33],
                revoked_at: NOW - 30,
                reason: CrlReason::Unspecified,
            },
        ]
    }

    fn request(entries: &[CrlEntry]) -> CrlRequest<'_> {
        CrlRequest {
            number: 7,
            this_update: NOW,
            next_update: NOW + 24 * 3600,
            shard_url: "http://crl.kiln.test/crl/3",
            entries,
        }
    }

    #[test]
    fn a_crl_verifies_under_the_intermediate_and_lists_each_entry() {
        let ca = CaHierarchy::generate().unwrap();
        let entries = entries();
        let crl =
            X509Crl::from_der(&crl_der(&ca.intermediate, &request(&entries)).unwrap()).unwrap();
        let key = ca.intermediate.cert.public_key().unwrap();
        assert!(crl.verify(&key).unwrap(), "signed by the intermediate");
        let root_key = ca.root.cert.public_key().unwrap();
        assert!(!crl.verify(&root_key).unwrap(), "not by another key");
        assert_eq!(
            crl.issuer_name().to_der().unwrap(),
            ca.intermediate.cert.subject_name().to_der().unwrap()
        );
        let revoked = crl.get_revoked().unwrap();
        let serials: Vec<Vec<u8>> = revoked
            .iter()
            .map(|r| r.serial_number().to_bn().unwrap().to_vec())
            .collect();
        assert_eq!(serials, [vec![0x01, 0x80, 0x02], vec![0x7f, 0x33]]);
        let der = crl.to_der().unwrap();
        // The reason survives only where one was given (0a 01 01: keyCompromise).
        let with_reason = [REASON_CODE, &[0x04, 0x03, 0x0a, 0x01, 0x01]].concat();
        assert_eq!(count(&der, &with_reason), 1);
        assert_eq!(count(&der, REASON_CODE), 1, "no reasonCode for unspecified");
        // The shard's URL in a critical IDP, and the CRL number.
        assert_eq!(count(&der, b"http://crl.kiln.test/crl/3"), 1);
        assert_eq!(
            count(
                &der,
                &[ISSUING_DISTRIBUTION_POINT, &[0x01, 0x01, 0xff]].concat()
            ),
            1
        );
        assert_eq!(
            count(
                &der,
                &[CRL_NUMBER, &[0x04, 0x03, 0x02, 0x01, 0x07]].concat()
            ),
            1
        );
    }

    #[test]
    fn an_empty_crl_has_no_revoked_certificates_field() {
        let ca = CaHierarchy::generate().unwrap();
        let der = crl_der(&ca.intermediate, &request(&[])).unwrap();
        let crl = X509Crl::from_der(&der).unwrap();
        assert!(crl.get_revoked().is_none());
        assert!(
            crl.verify(&ca.intermediate.cert.public_key().unwrap())
                .unwrap()
        );
    }

    #[test]
    fn next_update_must_follow_this_update_within_ten_days() {
        let ca = CaHierarchy::generate().unwrap();
        for next in [NOW, NOW - 1, NOW + MAX_CRL_VALIDITY_SECS + 1] {
            let bad = CrlRequest {
                next_update: next,
                ..request(&[])
            };
            assert!(matches!(
                crl_der(&ca.intermediate, &bad),
                Err(CertError::InvalidRequest(_))
            ));
        }
        let longest = CrlRequest {
            next_update: NOW + MAX_CRL_VALIDITY_SECS,
            ..request(&[])
        };
        crl_der(&ca.intermediate, &longest).unwrap();
    }

    #[test]
    fn reasons_round_trip_and_the_forbidden_ones_are_refused() {
        for code in [0, 1, 3, 4, 5, 9] {
            assert_eq!(CrlReason::from_code(code).unwrap().code(), code);
        }
        // cACompromise, certificateHold, removeFromCRL, aACompromise, unused 7.
        for code in [2, 6, 7, 8, 10] {
            assert_eq!(CrlReason::from_code(code), None, "{code}");
        }
    }

    fn count(haystack: &[u8], needle: &[u8]) -> usize {
        haystack
            .windows(needle.len())
            .filter(|w| *w == needle)
            .count()
    }
}
