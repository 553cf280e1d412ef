//! 512-bit intermediate multiply-divide, as Uniswap's FullMath.

use alloy_primitives::{U256, U512};

use crate::{MathError, Result};

fn narrow(q: U512) -> Result<U256> {
    let l = q.as_limbs();
    if l[4..].iter().any(|&x| x != 0) {
        return Err(MathError::Overflow);
    }
    Ok(U256::from_limbs([l[0], l[1], l[2], l[3]]))
}

/// `floor(a * b / d)`; fails when `d == 0` or the result does not fit 256 bits.
#[inline]
pub fn mul_div(a: U256, b: U256, d: U256) -> Result<U256> {
    if d.is_zero() {
        return Err(MathError::DivisionByZero);
    }
    // Fast path: the product fits 256 bits.
    if let Some(p) = a.checked_mul(b) {
        return Ok(match pow2(d) {
            Some(k) => p >> k,
            None => p / d,
        });
    }
    let p = U512::from(a) * U512::from(b);
    narrow(match pow2(d) {
        Some(k) => p >> k,
        None => p / U512::from(d),
    })
}

/// `k` when `d == 2^k` (Q96 and Q128 divisors): a shift instead of a long division.
#[inline]
fn pow2(d: U256) -> Option<usize> {
    (d.count_ones() == 1).then(|| d.trailing_zeros())
}

/// `ceil(a * b / d)`.
#[inline]
pub fn mul_div_rounding_up(a: U256, b: U256, d: U256) -> Result<U256> {
    if d.is_zero() {
        return Err(MathError::DivisionByZero);
    }
    if let Some(p) = a.checked_mul(b) {
        let (q, r) = match pow2(d) {
            Some(k) => (p >> k, p & (d - U256::from(1))),
            None => p.div_rem(d),
        };
        return if r.is_zero() {
            Ok(q)
        } else {
            q.checked_add(U256::from(1)).ok_or(MathError::Overflow)
        };
    }
    let p = U512::from(a) * U512::from(b);
    let (q, r) = match pow2(d) {
        Some(k) => (p >> k, p & (U512::from(d) - U512::from(1))),
        None => p.div_rem(U512::from(d)),
    };
    let q = narrow(q)?;
    if r.is_zero() {
        Ok(q)
    } else {
        q.checked_add(U256::from(1)).ok_or(MathError::Overflow)
    }
}

/// `ceil(a / b)` with `b != 0` (UnsafeMath.divRoundingUp).
#[inline]
pub fn div_rounding_up(a: U256, b: U256) -> Result<U256> {
    if b.is_zero() {
        return Err(MathError::DivisionByZero);
    }
    let (q, r) = a.div_rem(b);
    Ok(if r.is_zero() { q } else { q + U256::from(1) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The power-of-two shortcut against the long division, on products that fit 256 bits and
    /// products that do not, with and without remainders.
    #[test]
    fn power_of_two_divisors_equal_the_long_division() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let limbs = |n: &mut dyn FnMut() -> u64, k: u64| {
                let w = (k % 4) as usize + 1;
                let mut l = [0u64; 4];
                for v in l.iter_mut().take(w) {
                    *v = n();
                }
                U256::from_limbs(l)
            };
            let k = next();
            let a = limbs(&mut next, k);
            let b = limbs(&mut next, k >> 8);
            let d = U256::from(1) << (next() % 256) as usize;
            let long = |up: bool| {
                let (q, r) = (U512::from(a) * U512::from(b)).div_rem(U512::from(d));
                let q = narrow(q)?;
                if up && !r.is_zero() {
                    q.checked_add(U256::from(1)).ok_or(MathError::Overflow)
                } else {
                    Ok(q)
                }
            };
            assert_eq!(mul_div(a, b, d), long(false), "{a} * {b} / {d}");
            assert_eq!(
                mul_div_rounding_up(a, b, d),
                long(true),
                "{a} * {b} / {d} up"
            );
        }
    }

    #[test]
    fn wide_products() {
        let max = U256::MAX;
        assert_eq!(mul_div(max, max, max).unwrap(), max);
        assert_eq!(
            mul_div_rounding_up(max, U256::from(3), U256::from(3)).unwrap(),
            max
        );
        assert!(mul_div(max, U256::from(2), U256::from(1)).is_err());
        assert_eq!(
            mul_div_rounding_up(U256::from(7), U256::from(1), U256::from(2)).unwrap(),
            U256::from(4)
        );
        assert_eq!(
            div_rounding_up(U256::from(6), U256::from(3)).unwrap(),
            U256::from(2)
        );
    }
}
