//! `kiln ari renew-now SERIAL…`: what a CA does after an incident (a
//! misissuance, a key at risk) before it revokes — it moves the certificates'
//! ACME Renewal Information window (RFC 9773) to the past, so that every
//! client that polls ARI renews at once. Unknown serials are reported and
//! make the command fail; the known ones are marked all the same.

use crate::cli::DatabaseArgs;
use store::{RenewNowMark, now_ms};

pub async fn renew_now(
    db: &DatabaseArgs,
    serials: &[String],
    explanation_url: Option<&str>,
) -> anyhow::Result<()> {
    if let Some(url) = explanation_url {
        anyhow::ensure!(
            url.starts_with("https://") || url.starts_with("http://"),
            "--explanation-url {url:?} is not an http(s) URL"
        );
    }
    // Every serial checked before anything is written.
    let parsed: Vec<String> = serials
        .iter()
        .map(|s| normalize_serial(s))
        .collect::<anyhow::Result<_>>()?;
    let store = db.open().await?;
    let now = now_ms();
    let mut unknown = Vec::new();
    for serial in &parsed {
        match store.mark_renew_now(serial, explanation_url, now).await? {
            RenewNowMark::Marked => println!("{serial}: renew now"),
            RenewNowMark::AlreadyMarked => println!("{serial}: was already marked renew now"),
            RenewNowMark::Unknown => {
                eprintln!("{serial}: no such certificate");
                unknown.push(serial.as_str());
            }
        }
    }
    anyhow::ensure!(
        unknown.is_empty(),
        "{} unknown serial(s): {}",
        unknown.len(),
        unknown.join(" ")
    );
    Ok(())
}

/// A serial as the store keys it (lowercase hex), from hex as the
/// certificate URL, `openssl x509 -serial` (upper case) or a browser
/// (colon-separated) shows it.
pub(crate) fn normalize_serial(text: &str) -> anyhow::Result<String> {
    let hex: String = text
        .trim()
        .trim_start_matches("serial=")
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    anyhow::ensure!(
        !hex.is_empty()
            && hex.len().is_multiple_of(2)
            && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "{text:?} is not a certificate serial (an even number of hex digits)"
    );
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_read_as_openssl_and_browsers_show_them() {
        for (given, want) in [
            ("01ab", "01ab"),
            ("01AB", "01ab"),
            ("serial=01AB", "01ab"),
            ("01:ab:CD", "01abcd"),
            (" 01ab\n", "01ab"),
        ] {
            assert_eq!(normalize_serial(given).unwrap(), want, "{given:?}");
        }
        for bad in ["", "1ab", "01ag", "0x01"] {
            assert!(normalize_serial(bad).is_err(), "{bad:?}");
        }
    }
}
