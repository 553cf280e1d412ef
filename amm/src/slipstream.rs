//! Aerodrome Slipstream: Uniswap V3's swap math (a Slipstream swap pays and moves the price
//! exactly as a [`V3Pool`] with the pool's current fee does), plus the split of each step's fee
//! between unstaked LPs and the pool's gauge, as `CLPool.calculateFees` computes it.
//!
//! Liquidity staked in the gauge earns its pro-rata share of a step's fee, rounded up
//! (`mulDivRoundingUp(fee, staked, liquidity)`); the rest goes to unstaked LPs less the
//! *unstaked fee* (a share in pips, rounded up, also paid to the gauge). Staked liquidity moves at
//! tick crossings by each tick's `stakedLiquidityNet`, as active liquidity does by its
//! `liquidityNet`. The split changes who earns the fee, never what a swap pays.

use std::collections::BTreeMap;

use alloy_primitives::{I256, U256};

use crate::full_math::{mul_div, mul_div_rounding_up};
use crate::v3::{SwapResult, V3Pool, add_delta};
use crate::{MathError, Result};

/// `CLPool.calculateFees`: a step's `fee_amount` on `liquidity` of which `staked` is staked,
/// with the pool's unstaked fee in pips. Returns (fee growth per unit of unstaked liquidity,
/// Q128, and the amount the gauge earns).
pub fn calculate_fees(
    fee_amount: U256,
    liquidity: u128,
    staked: u128,
    unstaked_fee: u32,
) -> Result<(U256, U256)> {
    if staked > liquidity {
        return Err(MathError::LiquidityMath);
    }
    let q128 = U256::from(1) << 128usize;
    let apply_unstaked = |unstaked: U256, to_gauge: U256| -> Result<(U256, U256)> {
        let cut =
            mul_div_rounding_up(unstaked, U256::from(unstaked_fee), U256::from(1_000_000u32))?;
        Ok((unstaked - cut, to_gauge + cut))
    };
    if liquidity == staked {
        // Only staked liquidity (the contract checks `liquidity > 0` before calling).
        return Ok((U256::ZERO, fee_amount));
    }
    if staked == 0 {
        let (unstaked, to_gauge) = apply_unstaked(fee_amount, U256::ZERO)?;
        return Ok((mul_div(unstaked, q128, U256::from(liquidity))?, to_gauge));
    }
    let share = mul_div_rounding_up(fee_amount, U256::from(staked), U256::from(liquidity))?;
    let (unstaked, to_gauge) = apply_unstaked(fee_amount - share, share)?;
    Ok((
        mul_div(unstaked, q128, U256::from(liquidity - staked))?,
        to_gauge,
    ))
}

/// The staked side of a Slipstream pool: the staked part of the active liquidity and each
/// initialized tick's `stakedLiquidityNet`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Staked {
    pub liquidity: u128,
    pub net: BTreeMap<i32, i128>,
}

/// What a swap pays the gauge, in the input token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub swap: SwapResult,
    pub gauge_fee: U256,
    /// Staked liquidity after the swap.
    pub staked_liquidity: u128,
}

/// A swap on a Slipstream pool: [`V3Pool::swap`] and, step by step, the gauge's share of its fee.
pub fn swap(
    pool: &V3Pool,
    staked: &Staked,
    unstaked_fee: u32,
    zero_for_one: bool,
    amount_specified: I256,
    sqrt_price_limit: Option<U256>,
) -> Result<Split> {
    let mut staked_liquidity = staked.liquidity;
    let mut gauge_fee = U256::ZERO;
    let mut failed = None;
    let swap = pool.swap_with_steps(zero_for_one, amount_specified, sqrt_price_limit, |s| {
        if failed.is_some() {
            return;
        }
        if s.liquidity > 0 {
            match calculate_fees(s.fee_amount, s.liquidity, staked_liquidity, unstaked_fee) {
                Ok((_, g)) => gauge_fee += g,
                Err(e) => failed = Some(e),
            }
        }
        if let Some(t) = s.crossed {
            let net = staked.net.get(&t).copied().unwrap_or(0);
            match add_delta(staked_liquidity, if zero_for_one { -net } else { net }) {
                Ok(l) => staked_liquidity = l,
                Err(e) => failed = Some(e),
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(Split {
        swap,
        gauge_fee,
        staked_liquidity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_follows_the_contract_cases() {
        let f = U256::from(1_000_003u64);
        // Nothing staked, no unstaked fee: everything to LPs.
        let (g, to_gauge) = calculate_fees(f, 1_000, 0, 0).unwrap();
        assert_eq!(to_gauge, U256::ZERO);
        assert_eq!(
            g,
            mul_div(f, U256::from(1) << 128usize, U256::from(1_000)).unwrap()
        );
        // Nothing staked, 10 % unstaked fee: the gauge gets the ceiling of 10 %.
        let (_, to_gauge) = calculate_fees(f, 1_000, 0, 100_000).unwrap();
        assert_eq!(to_gauge, U256::from(100_001u64));
        // All staked: the whole fee.
        assert_eq!(
            calculate_fees(f, 1_000, 1_000, 100_000).unwrap(),
            (U256::ZERO, f)
        );
        // Half staked: half (rounded up) plus 10 % of the rest (rounded up).
        let (_, to_gauge) = calculate_fees(f, 1_000, 500, 100_000).unwrap();
        let half = U256::from(500_002u64);
        assert_eq!(to_gauge, half + U256::from(50_001u64));
        assert!(calculate_fees(f, 10, 11, 0).is_err());
    }
}
