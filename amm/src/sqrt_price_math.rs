//! Next sqrt prices and token deltas (Uniswap's SqrtPriceMath), with the contract's rounding.

use alloy_primitives::U256;

use crate::full_math::{div_rounding_up, mul_div, mul_div_rounding_up};
use crate::{MathError, Result};

const Q96: U256 = U256::from_limbs([0, 1 << 32usize, 0, 0]);

fn max_u160() -> U256 {
    (U256::from(1) << 160usize) - U256::from(1)
}

fn to_u160(x: U256) -> Result<U256> {
    if x > max_u160() {
        Err(MathError::Overflow)
    } else {
        Ok(x)
    }
}

pub fn get_next_sqrt_price_from_amount0_rounding_up(
    sqrt_p: U256,
    liquidity: u128,
    amount: U256,
    add: bool,
) -> Result<U256> {
    if amount.is_zero() {
        return Ok(sqrt_p);
    }
    let numerator1 = U256::from(liquidity) << 96usize;
    if add {
        if let Some(product) = amount.checked_mul(sqrt_p)
            && let Some(denominator) = numerator1.checked_add(product)
        {
            return mul_div_rounding_up(numerator1, sqrt_p, denominator);
        }
        let d = (numerator1 / sqrt_p)
            .checked_add(amount)
            .ok_or(MathError::Overflow)?;
        div_rounding_up(numerator1, d)
    } else {
        let product = amount.checked_mul(sqrt_p).ok_or(MathError::Overflow)?;
        if numerator1 <= product {
            return Err(MathError::InsufficientLiquidity);
        }
        to_u160(mul_div_rounding_up(
            numerator1,
            sqrt_p,
            numerator1 - product,
        )?)
    }
}

pub fn get_next_sqrt_price_from_amount1_rounding_down(
    sqrt_p: U256,
    liquidity: u128,
    amount: U256,
    add: bool,
) -> Result<U256> {
    let l = U256::from(liquidity);
    if add {
        let quotient = if amount <= max_u160() {
            (amount << 96usize) / l
        } else {
            mul_div(amount, Q96, l)?
        };
        to_u160(sqrt_p.checked_add(quotient).ok_or(MathError::Overflow)?)
    } else {
        let quotient = if amount <= max_u160() {
            div_rounding_up(amount << 96usize, l)?
        } else {
            mul_div_rounding_up(amount, Q96, l)?
        };
        if sqrt_p <= quotient {
            return Err(MathError::InsufficientLiquidity);
        }
        Ok(sqrt_p - quotient)
    }
}

pub fn get_next_sqrt_price_from_input(
    sqrt_p: U256,
    liquidity: u128,
    amount_in: U256,
    zero_for_one: bool,
) -> Result<U256> {
    if sqrt_p.is_zero() || liquidity == 0 {
        return Err(MathError::InsufficientLiquidity);
    }
    if zero_for_one {
        get_next_sqrt_price_from_amount0_rounding_up(sqrt_p, liquidity, amount_in, true)
    } else {
        get_next_sqrt_price_from_amount1_rounding_down(sqrt_p, liquidity, amount_in, true)
    }
}

pub fn get_next_sqrt_price_from_output(
    sqrt_p: U256,
    liquidity: u128,
    amount_out: U256,
    zero_for_one: bool,
) -> Result<U256> {
    if sqrt_p.is_zero() || liquidity == 0 {
        return Err(MathError::InsufficientLiquidity);
    }
    if zero_for_one {
        get_next_sqrt_price_from_amount1_rounding_down(sqrt_p, liquidity, amount_out, false)
    } else {
        get_next_sqrt_price_from_amount0_rounding_up(sqrt_p, liquidity, amount_out, false)
    }
}

pub fn get_amount0_delta(
    mut a: U256,
    mut b: U256,
    liquidity: u128,
    round_up: bool,
) -> Result<U256> {
    if a > b {
        std::mem::swap(&mut a, &mut b);
    }
    if a.is_zero() {
        return Err(MathError::SqrtPriceOutOfRange);
    }
    let numerator1 = U256::from(liquidity) << 96usize;
    let numerator2 = b - a;
    if round_up {
        div_rounding_up(mul_div_rounding_up(numerator1, numerator2, b)?, a)
    } else {
        Ok(mul_div(numerator1, numerator2, b)? / a)
    }
}

pub fn get_amount1_delta(
    mut a: U256,
    mut b: U256,
    liquidity: u128,
    round_up: bool,
) -> Result<U256> {
    if a > b {
        std::mem::swap(&mut a, &mut b);
    }
    if round_up {
        mul_div_rounding_up(U256::from(liquidity), b - a, Q96)
    } else {
        mul_div(U256::from(liquidity), b - a, Q96)
    }
}
