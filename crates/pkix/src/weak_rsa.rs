//! RSA moduli known to be weak whatever their size (BR 6.1.1.3): ones with
//! a small prime factor, ones whose two primes are so close that Fermat's
//! method factors them at once, and ones made by the Infineon library
//! behind ROCA (CVE-2017-15361), recognised by their residues. The checks
//! follow Boulder's `goodkey` and the ROCA authors' published detector.

use openssl::bn::{BigNum, BigNumContext, BigNumRef};
use openssl::error::ErrorStack;

/// Primes below 1000: a modulus divisible by one is trivially factored.
fn small_primes() -> impl Iterator<Item = u32> {
    (3..1000u32).filter(|&n| (2..n).take_while(|d| d * d <= n).all(|d| n % d != 0))
}

/// Fermat rounds tried: factors this close are found within the first few.
const FERMAT_ROUNDS: u32 = 100;

/// The primes of the ROCA fingerprint: Infineon's primes are
/// 65537^a mod M (plus a multiple of M) for M a primorial, so a modulus
/// made of two of them lies, modulo each of these primes, in the subgroup
/// 65537 generates. A random modulus does so for all of them with a
/// probability far below 2^-50.
const ROCA_PRIMES: [u32; 38] = [
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97,
    101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
];

/// Why the modulus (big-endian) is weak, or `None`.
pub fn weakness(n: &[u8]) -> Result<Option<&'static str>, ErrorStack> {
    let n = BigNum::from_slice(n)?;
    if has_small_factor(&n)? {
        return Ok(Some("RSA modulus with a small prime factor"));
    }
    if fermat_factorable(&n)? {
        return Ok(Some(
            "RSA modulus whose prime factors are too close together (Fermat factorable)",
        ));
    }
    if roca_fingerprint(&n)? {
        return Ok(Some(
            "RSA modulus from a key generator vulnerable to ROCA (CVE-2017-15361)",
        ));
    }
    Ok(None)
}

fn has_small_factor(n: &BigNumRef) -> Result<bool, ErrorStack> {
    for p in small_primes() {
        if n.mod_word(p)? == 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Fermat's method: n = a² − b² = (a − b)(a + b) for some a close to √n
/// when the factors are close. Tries a = ⌈√n⌉, ⌈√n⌉ + 1, … .
fn fermat_factorable(n: &BigNumRef) -> Result<bool, ErrorStack> {
    let mut ctx = BigNumContext::new()?;
    let mut a = isqrt(n, &mut ctx)?;
    let mut square = BigNum::new()?;
    square.sqr(&a, &mut ctx)?;
    if square.ucmp(n) == std::cmp::Ordering::Less {
        a.add_word(1)?;
    }
    let mut b2 = BigNum::new()?;
    for _ in 0..FERMAT_ROUNDS {
        square.sqr(&a, &mut ctx)?;
        b2.checked_sub(&square, n)?;
        if may_be_square(&b2)? {
            let b = isqrt(&b2, &mut ctx)?;
            square.sqr(&b, &mut ctx)?;
            if square == b2 {
                return Ok(true);
            }
        }
        a.add_word(1)?;
    }
    Ok(false)
}

/// False when `x` is certainly not a perfect square: its residue modulo
/// 64, 63, 65 or 11 is not a square's. Fewer than 1 % of non-squares pass,
/// so the square root (the costly step, a 2048-bit Newton iteration) is
/// taken about once in a hundred Fermat rounds.
fn may_be_square(x: &BigNumRef) -> Result<bool, ErrorStack> {
    for m in [64u32, 63, 65, 11] {
        let r = x.mod_word(m)?;
        if !(0..u64::from(m)).any(|y| y * y % u64::from(m) == r) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// ⌊√x⌋ by Newton's method from a power of two above it.
fn isqrt(x: &BigNumRef, ctx: &mut BigNumContext) -> Result<BigNum, ErrorStack> {
    if x.num_bits() == 0 {
        return BigNum::new();
    }
    let mut guess = BigNum::new()?;
    guess.set_bit(x.num_bits() / 2 + 1)?;
    let mut quotient = BigNum::new()?;
    let mut sum = BigNum::new()?;
    let mut next = BigNum::new()?;
    loop {
        quotient.checked_div(x, &guess, ctx)?;
        sum.checked_add(&guess, &quotient)?;
        next.rshift1(&sum)?;
        if next.ucmp(&guess) != std::cmp::Ordering::Less {
            return Ok(guess);
        }
        std::mem::swap(&mut guess, &mut next);
    }
}

fn roca_fingerprint(n: &BigNumRef) -> Result<bool, ErrorStack> {
    for p in ROCA_PRIMES {
        let residue = n.mod_word(p)?;
        if !in_subgroup_of_65537(residue, u64::from(p)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether `residue` is a power of 65537 modulo the prime `p`.
fn in_subgroup_of_65537(residue: u64, p: u64) -> bool {
    let g = 65537 % p;
    let mut power = 1;
    loop {
        if power == residue {
            return true;
        }
        power = power * g % p;
        if power == 1 {
            return false;
        }
    }
}

/// Keys with the weaknesses above, for tests (feature `test-util`).
#[cfg(any(test, feature = "test-util"))]
pub mod testing {
    use super::ROCA_PRIMES;
    use openssl::bn::{BigNum, BigNumContext, BigNumRef};
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::Rsa;

    /// A prime p ≡ 65537^k (mod M), M the product of the ROCA primes: the
    /// structure of Infineon's primes, which is what the fingerprint sees.
    /// Its top two bits are set, so two of them make a modulus of exactly
    /// `2 · bits` bits.
    pub fn roca_style_prime(bits: i32) -> BigNum {
        let mut ctx = BigNumContext::new().unwrap();
        let mut m = BigNum::from_u32(1).unwrap();
        for p in ROCA_PRIMES {
            m.mul_word(p).unwrap();
        }
        // p = r·M + 65537^k mod M with r in [¾·2^bits / M, 2^bits / M).
        let mut top = BigNum::new().unwrap();
        top.set_bit(bits).unwrap();
        let mut three_quarters = BigNum::new().unwrap();
        three_quarters.set_bit(bits - 1).unwrap();
        let mut quarter = BigNum::new().unwrap();
        quarter.set_bit(bits - 2).unwrap();
        let mut low_bound = BigNum::new().unwrap();
        low_bound.checked_add(&three_quarters, &quarter).unwrap();
        let (mut r_min, mut r_max) = (BigNum::new().unwrap(), BigNum::new().unwrap());
        r_min.checked_div(&low_bound, &m, &mut ctx).unwrap();
        r_min.add_word(1).unwrap();
        r_max.checked_div(&top, &m, &mut ctx).unwrap();
        let mut span = BigNum::new().unwrap();
        span.checked_sub(&r_max, &r_min).unwrap();
        let g = BigNum::from_u32(65537).unwrap();
        let (mut k, mut residue) = (BigNum::new().unwrap(), BigNum::new().unwrap());
        let (mut offset, mut r) = (BigNum::new().unwrap(), BigNum::new().unwrap());
        let (mut scaled, mut candidate) = (BigNum::new().unwrap(), BigNum::new().unwrap());
        loop {
            m.rand_range(&mut k).unwrap();
            residue.mod_exp(&g, &k, &m, &mut ctx).unwrap();
            span.rand_range(&mut offset).unwrap();
            r.checked_add(&r_min, &offset).unwrap();
            scaled.checked_mul(&r, &m, &mut ctx).unwrap();
            candidate.checked_add(&scaled, &residue).unwrap();
            if candidate.is_prime(20, &mut ctx).unwrap() {
                return candidate;
            }
        }
    }

    /// The smallest prime above `p`: with `p`, a Fermat-factorable pair.
    pub fn next_prime(p: &BigNumRef) -> BigNum {
        let mut ctx = BigNumContext::new().unwrap();
        let mut q = p.to_owned().unwrap();
        loop {
            q.add_word(2).unwrap();
            if q.is_prime(20, &mut ctx).unwrap() {
                return q;
            }
        }
    }

    /// A random prime of `bits` bits.
    pub fn prime(bits: i32) -> BigNum {
        let mut p = BigNum::new().unwrap();
        p.generate_prime(bits, false, None, None).unwrap();
        p
    }

    /// The RSA private key (e = 65537) with primes `p` and `q`; `None` when
    /// 65537 is not invertible modulo (p − 1)(q − 1).
    pub fn rsa_from_primes(p: &BigNumRef, q: &BigNumRef) -> Option<PKey<Private>> {
        let mut ctx = BigNumContext::new().unwrap();
        let one = BigNum::from_u32(1).unwrap();
        let e = BigNum::from_u32(65537).unwrap();
        let mut n = BigNum::new().unwrap();
        n.checked_mul(p, q, &mut ctx).unwrap();
        let (mut p1, mut q1) = (BigNum::new().unwrap(), BigNum::new().unwrap());
        p1.checked_sub(p, &one).unwrap();
        q1.checked_sub(q, &one).unwrap();
        let mut phi = BigNum::new().unwrap();
        phi.checked_mul(&p1, &q1, &mut ctx).unwrap();
        let mut d = BigNum::new().unwrap();
        d.mod_inverse(&e, &phi, &mut ctx).ok()?;
        let (mut dp, mut dq, mut qi) = (
            BigNum::new().unwrap(),
            BigNum::new().unwrap(),
            BigNum::new().unwrap(),
        );
        dp.nnmod(&d, &p1, &mut ctx).unwrap();
        dq.nnmod(&d, &q1, &mut ctx).unwrap();
        qi.mod_inverse(q, p, &mut ctx).unwrap();
        let rsa = Rsa::from_private_components(
            n,
            e,
            d,
            p.to_owned().unwrap(),
            q.to_owned().unwrap(),
            dp,
            dq,
            qi,
        )
        .unwrap();
        Some(PKey::from_rsa(rsa).unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{next_prime, prime, roca_style_prime};
    use super::*;
    use openssl::rsa::Rsa;

    fn product(a: &BigNumRef, b: &BigNumRef) -> Vec<u8> {
        let mut n = BigNum::new().unwrap();
        n.checked_mul(a, b, &mut BigNumContext::new().unwrap())
            .unwrap();
        n.to_vec()
    }

    #[test]
    fn random_keys_are_not_weak() {
        for _ in 0..3 {
            let rsa = Rsa::generate(2048).unwrap();
            assert_eq!(weakness(&rsa.n().to_vec()).unwrap(), None);
        }
    }

    #[test]
    fn a_small_factor_is_found() {
        let big = prime(2038);
        let small = BigNum::from_u32(997).unwrap();
        let why = weakness(&product(&small, &big)).unwrap().unwrap();
        assert!(why.contains("small prime factor"), "{why}");
    }

    #[test]
    fn close_primes_are_fermat_factorable() {
        let p = prime(1024);
        let q = next_prime(&p);
        let why = weakness(&product(&p, &q)).unwrap().unwrap();
        assert!(why.contains("Fermat"), "{why}");
    }

    #[test]
    fn a_roca_style_modulus_is_recognised() {
        let n = product(&roca_style_prime(1024), &roca_style_prime(1024));
        let why = weakness(&n).unwrap().unwrap();
        assert!(why.contains("ROCA"), "{why}");
    }

    #[test]
    fn the_square_filter_never_rejects_a_square() {
        for y in 0u32..2000 {
            let square = BigNum::from_u32(y * y).unwrap();
            assert!(may_be_square(&square).unwrap(), "{y}²");
        }
        let passed = (0u32..10_000)
            .filter(|&x| may_be_square(&BigNum::from_u32(x * 7 + 3).unwrap()).unwrap())
            .count();
        assert!(
            passed < 300,
            "{passed} of 10,000 non-squares (mostly) passed"
        );
    }

    #[test]
    fn integer_square_roots() {
        let mut ctx = BigNumContext::new().unwrap();
        for (x, root) in [
            (0u32, 0u32),
            (1, 1),
            (2, 1),
            (15, 3),
            (16, 4),
            (17, 4),
            (1 << 30, 1 << 15),
        ] {
            let got = isqrt(&BigNum::from_u32(x).unwrap(), &mut ctx).unwrap();
            assert_eq!(got, BigNum::from_u32(root).unwrap(), "√{x}");
        }
    }
}
