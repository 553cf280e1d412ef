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
        return Ok(p / d);
    }
    let q = U512::from(a) * U512::from(b) / U512::from(d);
    narrow(q)
}

/// `ceil(a * b / d)`.
#[inline]
pub fn mul_div_rounding_up(a: U256, b: U256, d: U256) -> Result<U256> {
    if d.is_zero() {
        return Err(MathError::DivisionByZero);
    }
    if let Some(p) = a.checked_mul(b) {
        let (q, r) = p.div_rem(d);
        return if r.is_zero() {
            Ok(q)
        } else {
            q.checked_add(U256::from(1)).ok_or(MathError::Overflow)
        };
    }
    let (q, r) = (U512::from(a) * U512::from(b)).div_rem(U512::from(d));
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
