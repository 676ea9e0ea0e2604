//! Check 2, serial numbers: each one positive, DER-minimal, at most 20
//! octets and with at least 64 bits after its prefix (RFC 5280 §4.1.2.2,
//! BR 7.1), and across the set a bit-frequency test that catches a stuck
//! bit in the random part. Uniqueness is the `certificates` primary key's
//! (each certificate's own serial is checked to be its row's).
//!
//! The layout is the signer's (`signer::serial`): one prefix byte fixed
//! per signer deployment, then CSPRNG output. Only serials of exactly that
//! length enter the frequency test, and only their random part.

use signer::serial::SERIAL_LEN;

/// Octets after the prefix byte for 64 bits of CSPRNG output (BR 7.1).
const MIN_RANDOM_OCTETS: usize = 8;
/// The longest serial RFC 5280 allows.
const MAX_OCTETS: usize = 20;
/// Below this many serials the frequency test says nothing.
pub const FREQUENCY_MIN_SERIALS: u64 = 100;
/// Each random bit must be set in this share of serials, or it is stuck
/// (or biased): 20 % to 80 %. For 100 serials that is six standard
/// deviations from a fair bit, so a CSPRNG never trips it.
const LOW: f64 = 0.2;
const HIGH: f64 = 0.8;

/// What is wrong with one stored serial (lowercase hex, as the store
/// keys it), if anything; and its octets when it is hex at all.
pub fn serial_problems(hex: &str) -> (Option<Vec<u8>>, Vec<String>) {
    let mut problems = Vec::new();
    if hex.is_empty()
        || !hex.len().is_multiple_of(2)
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        problems.push("not an even number of lowercase hex digits (the store's form)".into());
        return (None, problems);
    }
    let octets: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0))
        .collect();
    problems.extend(octet_problems(&octets));
    (Some(octets), problems)
}

/// What is wrong with the content octets of a serialNumber INTEGER.
pub fn octet_problems(octets: &[u8]) -> Vec<String> {
    let mut problems = Vec::new();
    let n = octets.len();
    if n > MAX_OCTETS {
        problems.push(format!("{n} octets: longer than RFC 5280's 20"));
    }
    match octets {
        [] => problems.push("empty".into()),
        [first, ..] if first & 0x80 != 0 => problems.push("negative (top bit set)".into()),
        [0, second, ..] if second & 0x80 == 0 => {
            problems.push("not DER-minimal (a leading zero octet)".into())
        }
        _ => {}
    }
    if !octets.is_empty() && octets.iter().all(|&b| b == 0) {
        problems.push("zero".into());
    }
    if n < 1 + MIN_RANDOM_OCTETS {
        problems.push(format!(
            "{n} octets ({} bits): fewer than a prefix byte and 64 bits of CSPRNG output",
            n * 8
        ));
    }
    problems
}

/// Set-bit counts per bit of the random part, over serials of the
/// signer's layout: a fixed-size tally, whatever the number of serials.
#[derive(Clone, Debug)]
pub struct BitFrequency {
    serials: u64,
    /// Serials of another length, left out.
    other_lengths: u64,
    ones: [u64; (SERIAL_LEN - 1) * 8],
}

impl Default for BitFrequency {
    fn default() -> Self {
        BitFrequency {
            serials: 0,
            other_lengths: 0,
            ones: [0; (SERIAL_LEN - 1) * 8],
        }
    }
}

impl BitFrequency {
    pub fn add(&mut self, octets: &[u8]) {
        if octets.len() != SERIAL_LEN {
            self.other_lengths += 1;
            return;
        }
        self.serials += 1;
        for (i, byte) in octets[1..].iter().enumerate() {
            for bit in 0..8 {
                if byte & (0x80 >> bit) != 0 {
                    self.ones[i * 8 + bit] += 1;
                }
            }
        }
    }

    pub fn serials(&self) -> u64 {
        self.serials
    }

    pub fn other_lengths(&self) -> u64 {
        self.other_lengths
    }

    /// The random bits set too rarely or too often, as messages; `None`
    /// when there are too few serials to tell.
    pub fn stuck_bits(&self) -> Option<Vec<String>> {
        if self.serials < FREQUENCY_MIN_SERIALS {
            return None;
        }
        let n = self.serials as f64;
        Some(
            self.ones
                .iter()
                .enumerate()
                .filter(|(_, ones)| {
                    let share = **ones as f64 / n;
                    !(LOW..=HIGH).contains(&share)
                })
                .map(|(bit, ones)| {
                    format!(
                        "bit {bit} of the random part (octet {}, mask {:#04x}) is set in {ones} \
                         of {} serials, outside {:.0}–{:.0} %: a stuck or biased generator",
                        1 + bit / 8,
                        0x80u8 >> (bit % 8),
                        self.serials,
                        LOW * 100.0,
                        HIGH * 100.0
                    )
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serial_of_the_signers_layout_is_good() {
        let serial = signer::serial::new_serial(0x01).unwrap();
        let hex: String = serial.iter().map(|b| format!("{b:02x}")).collect();
        let (octets, problems) = serial_problems(&hex);
        assert_eq!(octets.unwrap(), serial);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn short_negative_long_and_padded_serials_are_found() {
        let one = |hex: &str| serial_problems(hex).1.join("; ");
        assert!(one("01020304").contains("32 bits"), "{}", one("01020304"));
        assert!(one("81020304050607080910").contains("negative"));
        assert!(one("007f020304050607080910").contains("DER-minimal"));
        // A leading zero before a set top bit is the minimal positive form.
        assert!(!one("00ff020304050607080910").contains("DER-minimal"));
        assert!(one(&"01".repeat(21)).contains("longer than"));
        assert!(one("000000000000000000").contains("zero"));
        assert!(one("01AB").contains("lowercase hex"));
        assert!(one("1ab").contains("lowercase hex"));
        assert!(one(&"01".repeat(20)).is_empty());
    }

    fn random_serials(n: usize, stuck: Option<(usize, u8)>) -> BitFrequency {
        let mut tally = BitFrequency::default();
        for _ in 0..n {
            let mut serial = signer::serial::new_serial(0x01).unwrap();
            if let Some((octet, mask)) = stuck {
                serial[octet] &= !mask;
            }
            tally.add(&serial);
        }
        tally
    }

    #[test]
    fn a_stuck_bit_is_found_and_a_fair_generator_passes() {
        assert_eq!(random_serials(500, None).stuck_bits(), Some(vec![]));
        let stuck = random_serials(500, Some((5, 0x10))).stuck_bits().unwrap();
        assert_eq!(stuck.len(), 1, "{stuck:?}");
        // Octet 5 of the serial is octet 4 of the random part: bit 4*8+3.
        assert!(stuck[0].starts_with("bit 35 "), "{}", stuck[0]);
        assert!(stuck[0].contains("set in 0 of 500"), "{}", stuck[0]);
        // The prefix byte is fixed by design and not tested.
        let mut tally = BitFrequency::default();
        for _ in 0..200 {
            tally.add(&signer::serial::new_serial(0x7f).unwrap());
        }
        assert_eq!(tally.stuck_bits(), Some(vec![]));
        // Too few serials to tell, and other lengths left out.
        assert_eq!(random_serials(99, Some((5, 0x10))).stuck_bits(), None);
        tally.add(&[1, 2, 3, 4]);
        assert_eq!((tally.serials(), tally.other_lengths()), (200, 1));
    }
}
