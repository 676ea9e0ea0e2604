//! Debian's weak RSA keys (CVE-2008-0166, BR 6.1.1.3): from 2006 to 2008
//! Debian's OpenSSL seeded its generator with little more than the process
//! id, so every key it made is one of a few hundred thousand, all listed.
//! Debian's `openssl-blacklist` packages ship the lists (`blacklist.RSA-2048`
//! and so on): one line per key, the last 20 hex digits (80 bits) of the
//! SHA-1 of what `openssl rsa -noout -modulus` prints, `Modulus=<HEX>\n`;
//! `#` starts a comment line. Boulder's `goodkey` checks the same suffixes.
//!
//! The lists are data an operator installs, not code: none is compiled in.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Bytes of a list entry: the low 80 bits of the SHA-1.
const SUFFIX_LEN: usize = 10;

/// The union of the weak-key lists loaded; empty by default (no list, no
/// key refused).
#[derive(Clone, Default)]
pub struct DebianWeakKeys {
    suffixes: HashSet<[u8; SUFFIX_LEN]>,
}

impl std::fmt::Debug for DebianWeakKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DebianWeakKeys({} entries)", self.suffixes.len())
    }
}

/// A list that could not be read, or a line of it that is no entry.
#[derive(Debug, thiserror::Error)]
pub enum WeakKeyListError {
    #[error("reading the weak-key list {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {reason}", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

impl DebianWeakKeys {
    /// Reads every list in `paths`; the first file that is missing or has
    /// a malformed line is the error, naming it (and the line).
    pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<DebianWeakKeys, WeakKeyListError> {
        let mut keys = DebianWeakKeys::default();
        for path in paths {
            let path = path.as_ref();
            let text = std::fs::read_to_string(path).map_err(|source| WeakKeyListError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            keys.add_list(&text, path)?;
        }
        Ok(keys)
    }

    /// Adds the entries of one list's text; `path` only names it in errors.
    /// Returns how many lines were entries.
    pub fn add_list(&mut self, text: &str, path: &Path) -> Result<usize, WeakKeyListError> {
        let mut entries = 0;
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let suffix = parse_suffix(line).map_err(|reason| WeakKeyListError::Malformed {
                path: path.to_path_buf(),
                line: index + 1,
                reason,
            })?;
            self.suffixes.insert(suffix);
            entries += 1;
        }
        Ok(entries)
    }

    /// Distinct entries loaded.
    pub fn len(&self) -> usize {
        self.suffixes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.suffixes.is_empty()
    }

    /// Whether the RSA modulus (big-endian, leading zero octets allowed) is
    /// on a loaded list.
    pub fn contains(&self, modulus: &[u8]) -> bool {
        // The usual case, no list configured, costs no SHA-1.
        !self.suffixes.is_empty() && self.suffixes.contains(&suffix_of(modulus))
    }
}

/// The list line for a modulus: the last 20 hex digits (lowercase) of the
/// SHA-1 of [`modulus_line`]; what `openssl rsa -noout -modulus | sha1sum |
/// cut -c 21-40` prints.
pub fn fingerprint(modulus: &[u8]) -> String {
    suffix_of(modulus)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the lists hash: `Modulus=` and the modulus in uppercase hex, then a
/// newline, as `openssl rsa -noout -modulus` prints it (`BN_print`: no
/// leading zero digit). Boulder hashes `Modulus=%X\n` of the modulus's
/// minimal octets, which is the same text for every modulus of a whole
/// number of octets, the only ones Kiln accepts.
pub fn modulus_line(modulus: &[u8]) -> String {
    let zeros = modulus.iter().take_while(|&&b| b == 0).count();
    let hex: String = modulus[zeros..]
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let digits = match hex.strip_prefix('0') {
        Some(rest) => rest,
        None if hex.is_empty() => "0",
        None => &hex,
    };
    format!("Modulus={digits}\n")
}

fn suffix_of(modulus: &[u8]) -> [u8; SUFFIX_LEN] {
    let digest = openssl::sha::sha1(modulus_line(modulus).as_bytes());
    let mut suffix = [0; SUFFIX_LEN];
    suffix.copy_from_slice(&digest[digest.len() - SUFFIX_LEN..]);
    suffix
}

fn parse_suffix(line: &str) -> Result<[u8; SUFFIX_LEN], String> {
    let digits = line.as_bytes();
    if digits.len() != 2 * SUFFIX_LEN || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(format!(
            "{:?} is not an entry: expected {} hex digits (the last 80 bits of a SHA-1)",
            line.chars().take(48).collect::<String>(),
            2 * SUFFIX_LEN
        ));
    }
    let nibble = |c: u8| (c as char).to_digit(16).expect("checked hex digit") as u8;
    let mut suffix = [0; SUFFIX_LEN];
    for (byte, pair) in suffix.iter_mut().zip(digits.chunks(2)) {
        *byte = nibble(pair[0]) << 4 | nibble(pair[1]);
    }
    Ok(suffix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::rsa::Rsa;

    fn list(text: &str) -> Result<DebianWeakKeys, WeakKeyListError> {
        let mut keys = DebianWeakKeys::default();
        keys.add_list(text, Path::new("blacklist.RSA-2048"))?;
        Ok(keys)
    }

    /// The text hashed is exactly `Modulus=<uppercase hex>\n`, and the entry
    /// the last 20 hex digits of its SHA-1 (computed here independently).
    #[test]
    fn hashes_what_openssl_prints() {
        assert_eq!(modulus_line(&[0x00, 0xc0, 0xff, 0x0e]), "Modulus=C0FF0E\n");
        // BN_print drops a leading zero digit; no octet is dropped otherwise.
        assert_eq!(modulus_line(&[0x0a, 0x00, 0x01]), "Modulus=A0001\n");
        assert_eq!(modulus_line(&[]), "Modulus=0\n");
        let n = [0xc0, 0xff, 0x0e];
        let full: String = openssl::sha::sha1(b"Modulus=C0FF0E\n")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(fingerprint(&n), full[20..]);
        assert_eq!(fingerprint(&n).len(), 20);
        assert_eq!(fingerprint(&[0, 0, 0xc0, 0xff, 0x0e]), fingerprint(&n));
    }

    #[test]
    fn finds_a_listed_key_and_no_other() {
        let weak = Rsa::generate(2048).unwrap();
        let other = Rsa::generate(2048).unwrap();
        let n = weak.n().to_vec();
        let text = format!(
            "# 2048-bit keys of the Debian OpenSSL bug\n\n  {}  \r\n# the end\n",
            fingerprint(&n)
        );
        let keys = list(&text).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys.contains(&n));
        assert!(!keys.contains(&other.n().to_vec()));
        // Debian writes lowercase; an uppercase entry means the same.
        let upper = list(&fingerprint(&n).to_ascii_uppercase()).unwrap();
        assert!(upper.contains(&n));
        assert!(!DebianWeakKeys::default().contains(&n), "no list, no match");
    }

    #[test]
    fn comments_and_blank_lines_are_no_entries() {
        let keys = list("# only comments\n#\n\n   \n# 0123456789abcdef0123\n").unwrap();
        assert!(keys.is_empty());
    }

    #[test]
    fn a_malformed_line_names_the_file_and_line() {
        for bad in [
            "0123456789abcdef012",                      // 19 digits
            "0123456789abcdef01234",                    // 21 digits
            "0123456789abcdef012g",                     // not hex
            "0123456789abcdef0123 # trailing",          // no inline comments
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4", // a whole SHA-1
        ] {
            let text = format!("# header\n{}\n{bad}\n", "0".repeat(20));
            let err = list(&text).unwrap_err().to_string();
            assert!(err.starts_with("blacklist.RSA-2048:3: "), "{bad:?}: {err}");
            assert!(err.contains("20 hex digits"), "{err}");
        }
    }

    #[test]
    fn load_reads_every_file_and_names_a_missing_one() {
        let dir = std::env::temp_dir().join(format!("kiln-weak-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (Rsa::generate(2048).unwrap(), Rsa::generate(2048).unwrap());
        let (first, second) = (dir.join("blacklist.RSA-2048"), dir.join("extra"));
        std::fs::write(&first, format!("{}\n", fingerprint(&a.n().to_vec()))).unwrap();
        std::fs::write(&second, format!("{}\n", fingerprint(&b.n().to_vec()))).unwrap();
        let keys = DebianWeakKeys::load(&[&first, &second]).unwrap();
        assert!(keys.contains(&a.n().to_vec()) && keys.contains(&b.n().to_vec()));
        let missing = dir.join("absent");
        let err = DebianWeakKeys::load(&[&first, &missing]).unwrap_err();
        assert!(matches!(err, WeakKeyListError::Read { .. }));
        assert!(err.to_string().contains("absent"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
