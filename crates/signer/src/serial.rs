//! Certificate serial numbers.
//!
//! A serial is 18 bytes, big-endian: one per-signer prefix byte followed by 17
//! bytes (136 bits) from OpenSSL's CSPRNG. The prefix keeps serials from
//! different signer instances disjoint, and the CA/B Forum Baseline
//! Requirements ask for at least 64 bits of CSPRNG output. Restricting the
//! prefix to `0x01..=0x7f` means the DER INTEGER is positive (top bit clear)
//! and minimally encoded (no leading zero byte), so the bytes we store are
//! exactly the bytes that end up in the certificate.

use openssl::error::ErrorStack;

/// Total serial length in bytes (prefix + random part).
pub const SERIAL_LEN: usize = 18;

/// Errors producing a serial number.
#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    #[error("serial prefix {0:#04x} is outside 0x01..=0x7f")]
    BadPrefix(u8),
    #[error("random number generator failed: {0}")]
    Rng(#[from] ErrorStack),
}

/// Draws a fresh serial for the signer identified by `prefix`.
pub fn new_serial(prefix: u8) -> Result<Vec<u8>, SerialError> {
    if !(0x01..=0x7f).contains(&prefix) {
        return Err(SerialError::BadPrefix(prefix));
    }
    let mut serial = vec![0u8; SERIAL_LEN];
    serial[0] = prefix;
    openssl::rand::rand_bytes(&mut serial[1..])?;
    Ok(serial)
}

/// Lowercase hex form used in logs, storage keys and the ACME API.
pub fn serial_hex(serial: &[u8]) -> String {
    hex::encode(serial)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn serial_is_positive_and_sized() {
        for prefix in [0x01, 0x2a, 0x7f] {
            let serial = new_serial(prefix).unwrap();
            assert_eq!(serial.len(), SERIAL_LEN);
            assert_eq!(serial[0], prefix);
            // Top bit clear => positive INTEGER; non-zero first byte => minimal DER.
            assert!(serial[0] & 0x80 == 0 && serial[0] != 0);
            let bn = openssl::bn::BigNum::from_slice(&serial).unwrap();
            assert!(!bn.is_negative());
            assert_eq!(bn.to_vec(), serial, "no leading zero to strip");
        }
    }

    #[test]
    fn serials_are_unique() {
        let draws = 10_000;
        let set: HashSet<Vec<u8>> = (0..draws).map(|_| new_serial(0x01).unwrap()).collect();
        assert_eq!(set.len(), draws);
    }

    #[test]
    fn bad_prefix_rejected() {
        for prefix in [0x00, 0x80, 0xff] {
            assert!(matches!(new_serial(prefix), Err(SerialError::BadPrefix(p)) if p == prefix));
        }
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(serial_hex(&[0x01, 0xab, 0xcd]), "01abcd");
    }
}
