//! `kiln block-key`: an operator puts a compromised key on the blocklist
//! without a certificate to revoke (a key found published, a report of
//! compromise); revoking a certificate for keyCompromise does the same by
//! itself. The key is named as the api names it (`api::csr::key_digest`),
//! so the entry matches the key however a client encodes it later.

use crate::cli::DatabaseArgs;
use anyhow::Context;
use std::path::PathBuf;
use store::{BlockedKey, KeyDigest, now_ms};

pub enum KeyArg {
    /// A PEM public key or certificate.
    Pem(PathBuf),
    /// The hex SHA-256 of the canonical DER SubjectPublicKeyInfo.
    Sha256(String),
}

pub async fn block_key(db: &DatabaseArgs, key: KeyArg, comment: &str) -> anyhow::Result<()> {
    let digest = match key {
        KeyArg::Pem(path) => {
            let pem =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            digest_of_pem(&pem).with_context(|| format!("{}", path.display()))?
        }
        KeyArg::Sha256(hex) => {
            KeyDigest::from_hex(&hex).with_context(|| format!("{hex:?} is not 64 hex digits"))?
        }
    };
    let store = db.open().await?;
    let added = store
        .block_key(&BlockedKey {
            digest: digest.clone(),
            revoked_serial: None,
            comment: comment.to_string(),
            created_at: now_ms(),
        })
        .await?;
    match added {
        true => println!("blocked key {digest}"),
        false => println!("key {digest} was already blocked"),
    }
    Ok(())
}

/// The digest of a PEM public key, or of a PEM certificate's key.
fn digest_of_pem(pem: &[u8]) -> anyhow::Result<KeyDigest> {
    let spki = match openssl::x509::X509::from_pem(pem) {
        Ok(cert) => cert.public_key()?.public_key_to_der()?,
        Err(_) => openssl::pkey::PKey::public_key_from_pem(pem)
            .context("neither a PEM certificate nor a PEM public key")?
            .public_key_to_der()?,
    };
    api::csr::key_digest(&spki).map_err(|p| anyhow::anyhow!("{}", p.detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_and_its_certificate_name_the_same_digest() {
        let key = openssl::pkey::PKey::from_ec_key(
            openssl::ec::EcKey::generate(
                &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)
                    .unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        let mut builder = openssl::x509::X509::builder().unwrap();
        builder.set_version(2).unwrap();
        let serial = openssl::bn::BigNum::from_u32(7).unwrap();
        builder
            .set_serial_number(&serial.to_asn1_integer().unwrap())
            .unwrap();
        let mut name = openssl::x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "compromised").unwrap();
        let name = name.build();
        builder.set_subject_name(&name).unwrap();
        builder.set_issuer_name(&name).unwrap();
        let now = openssl::asn1::Asn1Time::days_from_now(0).unwrap();
        let later = openssl::asn1::Asn1Time::days_from_now(1).unwrap();
        builder.set_not_before(&now).unwrap();
        builder.set_not_after(&later).unwrap();
        builder.set_pubkey(&key).unwrap();
        builder
            .sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        let cert_pem = builder.build().to_pem().unwrap();
        let key_pem = key.public_key_to_pem().unwrap();
        let from_cert = digest_of_pem(&cert_pem).unwrap();
        assert_eq!(from_cert, digest_of_pem(&key_pem).unwrap());
        let spki = key.public_key_to_der().unwrap();
        assert_eq!(from_cert, api::csr::key_digest(&spki).unwrap());
        assert!(digest_of_pem(b"not pem").is_err());
    }
}
