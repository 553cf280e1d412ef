//! One swap step within a tick range (Uniswap's SwapMath.computeSwapStep).

use alloy_primitives::{I256, U256};

use crate::Result;
use crate::full_math::{mul_div, mul_div_rounding_up};
use crate::sqrt_price_math::*;

/// Result of one step: the new sqrt price and the amounts it moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwapStep {
    pub sqrt_price_next: U256,
    pub amount_in: U256,
    pub amount_out: U256,
    pub fee_amount: U256,
}

/// `amount_remaining > 0` is exact input, `< 0` exact output; `fee_pips` in millionths.
// The conditions are written as in SwapMath.sol so the two can be read side by side.
#[allow(clippy::nonminimal_bool)]
pub fn compute_swap_step(
    sqrt_current: U256,
    sqrt_target: U256,
    liquidity: u128,
    amount_remaining: I256,
    fee_pips: u32,
) -> Result<SwapStep> {
    let zero_for_one = sqrt_current >= sqrt_target;
    let exact_in = !amount_remaining.is_negative();
    let fee = U256::from(fee_pips);
    let million = U256::from(1_000_000u32);
    let remaining_abs = amount_remaining.unsigned_abs();
    let mut amount_in = U256::ZERO;
    let mut amount_out = U256::ZERO;
    let sqrt_next;
    if exact_in {
        let less_fee = mul_div(remaining_abs, million - fee, million)?;
        amount_in = if zero_for_one {
            get_amount0_delta(sqrt_target, sqrt_current, liquidity, true)?
        } else {
            get_amount1_delta(sqrt_current, sqrt_target, liquidity, true)?
        };
        sqrt_next = if less_fee >= amount_in {
            sqrt_target
        } else {
            get_next_sqrt_price_from_input(sqrt_current, liquidity, less_fee, zero_for_one)?
        };
    } else {
        amount_out = if zero_for_one {
            get_amount1_delta(sqrt_target, sqrt_current, liquidity, false)?
        } else {
            get_amount0_delta(sqrt_current, sqrt_target, liquidity, false)?
        };
        sqrt_next = if remaining_abs >= amount_out {
            sqrt_target
        } else {
            get_next_sqrt_price_from_output(sqrt_current, liquidity, remaining_abs, zero_for_one)?
        };
    }
    let max = sqrt_target == sqrt_next;
    if zero_for_one {
        if !(max && exact_in) {
            amount_in = get_amount0_delta(sqrt_next, sqrt_current, liquidity, true)?;
        }
        if !(max && !exact_in) {
            amount_out = get_amount1_delta(sqrt_next, sqrt_current, liquidity, false)?;
        }
    } else {
        if !(max && exact_in) {
            amount_in = get_amount1_delta(sqrt_current, sqrt_next, liquidity, true)?;
        }
        if !(max && !exact_in) {
            amount_out = get_amount0_delta(sqrt_current, sqrt_next, liquidity, false)?;
        }
    }
    if !exact_in && amount_out > remaining_abs {
        amount_out = remaining_abs;
    }
    let fee_amount = if exact_in && sqrt_next != sqrt_target {
        remaining_abs - amount_in
    } else {
        mul_div_rounding_up(amount_in, fee, million - fee)?
    };
    Ok(SwapStep {
        sqrt_price_next: sqrt_next,
        amount_in,
        amount_out,
        fee_amount,
    })
}
