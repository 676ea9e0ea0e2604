//! dns-account-01 (draft-ietf-acme-dns-account-label): dns-01's TXT digest
//! under a label derived from the account URL, so that several accounts
//! (each with its own CNAME delegation) can validate one name at once.

use dns::Dns;
use domain::Problem;

/// The account's label: base32 (RFC 4648 §6, lowercase) of the first 10
/// octets of SHA-256(account URL), exactly 16 characters, no padding. The
/// account URL is the one the client got in `Location` (its JWS `kid`), so
/// the URL format is a contract with every record provisioned ahead.
pub fn label(account_url: &str) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let digest = openssl::sha::sha256(account_url.as_bytes());
    // 80 bits as 16 groups of 5.
    let bits = digest[..10]
        .iter()
        .fold(0u128, |acc, byte| (acc << 8) | u128::from(*byte));
    (0..16)
        .rev()
        .map(|group| char::from(ALPHABET[((bits >> (group * 5)) & 31) as usize]))
        .collect()
}

/// `_<label>._acme-challenge.<domain>`, `domain` the base name (no `*.`).
pub fn record_name(account_url: &str, domain: &str) -> String {
    format!("_{}._acme-challenge.{domain}", label(account_url))
}

/// The TXT record at [`record_name`] must hold the dns-01 digest of the key
/// authorization.
pub async fn validate(
    dns: &Dns,
    domain: &str,
    account_url: &str,
    key_authorization: &str,
) -> Result<(), Problem> {
    let name = record_name(account_url, domain);
    crate::challenge::validate_txt_digest(dns, domain, &name, key_authorization)
        .await
        .map_err(|mut problem| {
            // The draft: say which account URL the name was built from.
            problem.detail = format!("{} (label of account {account_url})", problem.detail);
            problem
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drafts_test_vector() {
        let url = "https://example.com/acme/acct/ExampleAccount";
        assert_eq!(label(url), "ujmmovf2vn55tgye");
        assert_eq!(
            record_name(url, "example.org"),
            "_ujmmovf2vn55tgye._acme-challenge.example.org"
        );
    }

    #[test]
    fn labels_differ_per_account_and_are_sixteen_base32_characters() {
        let a = label("https://kiln.test/acme/acct/a");
        let b = label("https://kiln.test/acme/acct/b");
        assert_ne!(a, b);
        for l in [a, b] {
            assert_eq!(l.len(), 16);
            assert!(
                l.bytes().all(|c| matches!(c, b'a'..=b'z' | b'2'..=b'7')),
                "{l}"
            );
        }
    }
}
