//! `kiln revoke SERIAL… --reason NAME`: the operator's revocation (BR 4.9.1:
//! a CA revokes on its own findings too), of any certificate whose serial a
//! signature may exist for — a precertificate whose final certificate was
//! never signed included, since a precertificate is a promise to issue and
//! has revocation status like one. The signer's CRL updater lists each on
//! its shard's CRL within `publish_within`.

use crate::cli::DatabaseArgs;
use crate::commands::ari::normalize_serial;
use store::now_ms;

/// The CRLReason codes the BRs allow (7.2.2), by their RFC 5280 names.
const REASONS: &[(&str, i64)] = &[
    ("unspecified", 0),
    ("keyCompromise", 1),
    ("affiliationChanged", 3),
    ("superseded", 4),
    ("cessationOfOperation", 5),
    ("privilegeWithdrawn", 9),
];

/// A reason by name (any case) or code.
pub(crate) fn parse_reason(text: &str) -> Result<i64, String> {
    REASONS
        .iter()
        .find(|(name, code)| name.eq_ignore_ascii_case(text) || code.to_string() == text)
        .map(|(_, code)| *code)
        .ok_or_else(|| {
            let names: Vec<&str> = REASONS.iter().map(|(n, _)| *n).collect();
            format!(
                "{text:?} is not a reason the Baseline Requirements allow: {}",
                names.join(", ")
            )
        })
}

/// A reason's RFC 5280 name, or its code when the BRs do not allow it
/// (another revocation path may have stored one).
fn reason_name(code: i64) -> String {
    REASONS
        .iter()
        .find(|(_, c)| *c == code)
        .map_or_else(|| code.to_string(), |(name, _)| (*name).to_string())
}

/// What to say of `serial` when revoking it for `reason` changed no row,
/// from the row as read afterwards (`found`): `Ok` when it stands revoked
/// for `reason`, `Err` (refused) otherwise. The update changes every row
/// on record unless it is already revoked for `reason`, whatever its state
/// (a signature may exist for every one), so anything else is a row that
/// another writer changed between the update and the read.
fn unchanged(
    serial: &str,
    reason: i64,
    found: Option<&store::CertificateRecord>,
) -> Result<String, String> {
    let Some(cert) = found else {
        return Err(format!("{serial}: no such certificate"));
    };
    let (state, wanted) = (cert.state.as_str(), reason_name(reason));
    match (cert.revoked_at, cert.revoked_reason) {
        (Some(_), Some(r)) if r == reason => Ok(format!(
            "{serial}: already revoked for this reason ({wanted}, {state})"
        )),
        (Some(_), other) => Err(format!(
            "{serial}: revoked meanwhile by another revocation, for {} rather than {wanted} \
             ({state}); run again to record {wanted}",
            other.map_or_else(|| "no reason".to_string(), reason_name)
        )),
        (None, _) => Err(format!(
            "{serial}: stored while this revocation ran ({state}), not revoked; run again"
        )),
    }
}

pub async fn revoke(db: &DatabaseArgs, serials: &[String], reason: i64) -> anyhow::Result<()> {
    let parsed: Vec<String> = serials
        .iter()
        .map(|s| normalize_serial(s))
        .collect::<anyhow::Result<_>>()?;
    let store = db.open().await?;
    let now = now_ms();
    let mut refused = Vec::new();
    for serial in &parsed {
        if store.revoke_by_operator(serial, reason, now).await? {
            println!("{serial}: revoked (reason {reason}); on its CRL shard at the next update");
        } else {
            match unchanged(serial, reason, store.certificate(serial).await?.as_ref()) {
                Ok(said) => println!("{said}"),
                Err(said) => {
                    eprintln!("{said}");
                    refused.push(serial.as_str());
                }
            }
        }
    }
    if reason == 1 {
        println!(
            "keyCompromise: block the key as well (`kiln block-key`) so it is refused from now on"
        );
    }
    anyhow::ensure!(
        refused.is_empty(),
        "{} serial(s) not revoked: {}",
        refused.len(),
        refused.join(" ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_by_name_or_code_and_only_the_brs() {
        assert_eq!(parse_reason("keyCompromise"), Ok(1));
        assert_eq!(parse_reason("KEYCOMPROMISE"), Ok(1));
        assert_eq!(parse_reason("4"), Ok(4));
        assert_eq!(parse_reason("unspecified"), Ok(0));
        // cACompromise (2) and certificateHold (6) are not for leaves.
        assert!(parse_reason("2").unwrap_err().contains("superseded"));
        assert!(parse_reason("certificateHold").is_err());
    }

    fn record(revoked_reason: Option<i64>) -> store::CertificateRecord {
        store::CertificateRecord {
            serial: "0a".into(),
            order_id: "o".into(),
            account_id: "a".into(),
            state: store::CertificateState::Precert,
            not_before: 0,
            not_after: 1,
            precert_der: Some(vec![1]),
            sct_list: None,
            final_der: None,
            revoked_at: revoked_reason.map(|_| 5),
            revoked_reason,
            issuer_id: None,
            crl_shard: 0,
            created_at: 0,
        }
    }

    #[test]
    fn an_unchanged_row_is_described_as_it_stands() {
        assert_eq!(
            unchanged("0a", 1, None),
            Err("0a: no such certificate".into())
        );
        assert_eq!(
            unchanged("0a", 1, Some(&record(Some(1)))),
            Ok("0a: already revoked for this reason (keyCompromise, precert)".into())
        );
        // Another revocation replaced the reason between update and read.
        let other = unchanged("0a", 1, Some(&record(Some(5)))).unwrap_err();
        assert!(other.contains("revoked meanwhile"), "{other}");
        assert!(
            other.contains("cessationOfOperation rather than keyCompromise"),
            "{other}"
        );
        let odd = unchanged("0a", 1, Some(&record(Some(2)))).unwrap_err();
        assert!(odd.contains("for 2 rather than keyCompromise"), "{odd}");
        // A row written after the update found none.
        let late = unchanged("0a", 1, Some(&record(None))).unwrap_err();
        assert!(late.contains("not revoked"), "{late}");
        for said in [other, odd, late] {
            assert!(!said.contains("nothing was signed"), "{said}");
        }
    }
}
