//! `kiln eab create | list | revoke`: the operator's External Account
//! Binding keys (RFC 8555 §7.3.4). A key id and HMAC key go to one
//! customer, whose client signs its newAccount with them; the api binds
//! the key to that one account. The HMAC key is printed once, at creation,
//! and never again.

use crate::cli::DatabaseArgs;
use anyhow::Context;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use store::{EabKey, now_ms};

/// 256 bits: as long as HS256's output, more than any HMAC needs.
const HMAC_KEY_BYTES: usize = 32;
const KEY_ID_BYTES: usize = 16;

fn random_b64(bytes: usize) -> anyhow::Result<(Vec<u8>, String)> {
    let mut raw = vec![0u8; bytes];
    openssl::rand::rand_bytes(&mut raw).context("the CSPRNG")?;
    let text = URL_SAFE_NO_PAD.encode(&raw);
    Ok((raw, text))
}

pub async fn create(db: &DatabaseArgs, comment: &str) -> anyhow::Result<()> {
    let store = db.open().await?;
    let (_, key_id) = random_b64(KEY_ID_BYTES)?;
    let (hmac_key, hmac_b64) = random_b64(HMAC_KEY_BYTES)?;
    let key = EabKey::new(key_id.clone(), hmac_key, comment.to_string(), now_ms());
    // 128 random bits: a collision means a broken CSPRNG, not bad luck.
    anyhow::ensure!(store.create_eab_key(&key).await?, "key id {key_id} exists");
    println!("key id:   {key_id}");
    println!("HMAC key: {hmac_b64}");
    println!();
    println!("The HMAC key is shown only now. It binds one account, once.");
    println!("certbot: --eab-kid {key_id} --eab-hmac-key {hmac_b64}");
    println!("lego:    --eab --kid {key_id} --hmac {hmac_b64}");
    Ok(())
}

pub async fn list(db: &DatabaseArgs) -> anyhow::Result<()> {
    let store = db.open().await?;
    println!(
        "{:<24} {:<24} {:<18} {:<24} comment",
        "key id", "created", "account", "revoked"
    );
    for key in store.eab_keys().await? {
        println!(
            "{:<24} {:<24} {:<18} {:<24} {}",
            key.key_id,
            time_text(Some(key.created_at)),
            key.account_id.as_deref().unwrap_or("-"),
            time_text(key.revoked_at),
            key.comment,
        );
    }
    Ok(())
}

pub async fn revoke(db: &DatabaseArgs, key_id: &str) -> anyhow::Result<()> {
    let store = db.open().await?;
    if store.revoke_eab_key(key_id, now_ms()).await? {
        println!("revoked EAB key {key_id}");
        return Ok(());
    }
    match store.eab_key(key_id).await? {
        Some(_) => println!("EAB key {key_id} was already revoked"),
        None => anyhow::bail!("no EAB key {key_id}"),
    }
    Ok(())
}

/// RFC 3339 in UTC, or `-`.
fn time_text(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return "-".into() };
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}
