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
            match store.certificate(serial).await? {
                Some(cert) if cert.revoked_reason == Some(reason) => {
                    println!("{serial}: already revoked for this reason");
                }
                Some(cert) => {
                    eprintln!("{serial}: nothing was signed with it ({:?})", cert.state);
                    refused.push(serial.as_str());
                }
                None => {
                    eprintln!("{serial}: no such certificate");
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
}
