//! Uniswap-V2-style constant product with each DEX's fee (Uniswap V2 0.30 %, others vary).
//!
//! With `fee_pips = 3000` these equal UniswapV2Library's `getAmountOut`/`getAmountIn` to the wei:
//! scaling 997/1000 to 997 000/1 000 000 multiplies numerator and denominator alike.

use alloy_primitives::U256;

use crate::{MathError, Result};

const MILLION: u64 = 1_000_000;

/// Largest output the pair's K check accepts for `amount_in`.
pub fn get_amount_out(
    amount_in: U256,
    reserve_in: U256,
    reserve_out: U256,
    fee_pips: u32,
) -> Result<U256> {
    if amount_in.is_zero() {
        return Err(MathError::ZeroAmount);
    }
    if reserve_in.is_zero() || reserve_out.is_zero() {
        return Err(MathError::InsufficientLiquidity);
    }
    let with_fee = amount_in
        .checked_mul(U256::from(MILLION - fee_pips as u64))
        .ok_or(MathError::Overflow)?;
    let num = with_fee
        .checked_mul(reserve_out)
        .ok_or(MathError::Overflow)?;
    let den = reserve_in
        .checked_mul(U256::from(MILLION))
        .and_then(|x| x.checked_add(with_fee))
        .ok_or(MathError::Overflow)?;
    Ok(num / den)
}

/// Smallest input that buys `amount_out`.
pub fn get_amount_in(
    amount_out: U256,
    reserve_in: U256,
    reserve_out: U256,
    fee_pips: u32,
) -> Result<U256> {
    if amount_out.is_zero() {
        return Err(MathError::ZeroAmount);
    }
    if reserve_in.is_zero() || amount_out >= reserve_out {
        return Err(MathError::InsufficientLiquidity);
    }
    let num = reserve_in
        .checked_mul(amount_out)
        .and_then(|x| x.checked_mul(U256::from(MILLION)))
        .ok_or(MathError::Overflow)?;
    let den = (reserve_out - amount_out)
        .checked_mul(U256::from(MILLION - fee_pips as u64))
        .ok_or(MathError::Overflow)?;
    Ok(num / den + U256::from(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_997_over_1000_formula() {
        let (ri, ro) = (
            U256::from(5_000_000_000_000u64),
            U256::from(9_000_000_000_000_000_000u128),
        );
        for a in [1u64, 999, 1_000_000, 123_456_789_012] {
            let a = U256::from(a);
            let classic = a * U256::from(997) * ro / (ri * U256::from(1000) + a * U256::from(997));
            assert_eq!(get_amount_out(a, ri, ro, 3000).unwrap(), classic);
            let back = get_amount_in(classic.max(U256::from(1)), ri, ro, 3000).unwrap();
            assert!(back <= a.max(U256::from(1)) + U256::from(1));
        }
    }
}
