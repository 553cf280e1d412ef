//! A Uniswap-V3-style pool (Uniswap V3, PancakeSwap V3): state, liquidity changes and full swaps.
//!
//! Initialized ticks live in a `BTreeMap`; the search for the next tick reproduces the contract's
//! `nextInitializedTickWithinOneWord`, including stopping at the edge of a 256-tick-spacing word
//! when no tick is initialized in it. That stop starts a new swap step, and every step rounds, so
//! it matters for exactness.

use std::collections::BTreeMap;

use alloy_primitives::{I256, U256};

use crate::swap_math::compute_swap_step;
use crate::tick_math::*;
use crate::{MathError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TickInfo {
    pub liquidity_gross: u128,
    pub liquidity_net: i128,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V3Pool {
    pub sqrt_price_x96: U256,
    pub tick: i32,
    /// Active liquidity.
    pub liquidity: u128,
    /// LP fee in pips (millionths).
    pub fee: u32,
    pub tick_spacing: i32,
    pub ticks: BTreeMap<i32, TickInfo>,
}

/// The outcome of a swap: the pool's deltas (positive = into the pool) and its state after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwapResult {
    pub amount0: I256,
    pub amount1: I256,
    pub sqrt_price_x96: U256,
    pub tick: i32,
    pub liquidity: u128,
    /// Initialized ticks crossed.
    pub ticks_crossed: u32,
}

/// One step of a swap's loop (see [`V3Pool::swap_with_steps`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwapStep {
    /// The fee the step took from its input.
    pub fee_amount: U256,
    /// The active liquidity during the step.
    pub liquidity: u128,
    /// The initialized tick the step ended on and crossed, if any.
    pub crossed: Option<i32>,
}

pub(crate) fn add_delta(x: u128, y: i128) -> Result<u128> {
    if y < 0 {
        x.checked_sub(y.unsigned_abs())
    } else {
        x.checked_add(y as u128)
    }
    .ok_or(MathError::LiquidityMath)
}

fn i256(x: U256) -> Result<I256> {
    I256::try_from(x).map_err(|_| MathError::Overflow)
}

/// Uniswap V3's factory accepts spacings in `(0, 16384)`; outside it the tick-bitmap arithmetic
/// divides by zero or overflows `i32`.
fn check_spacing(tick_spacing: i32) -> Result<()> {
    if tick_spacing > 0 && tick_spacing < 16384 {
        Ok(())
    } else {
        Err(MathError::InvalidTickSpacing)
    }
}

impl V3Pool {
    /// A pool just initialized at `sqrt_price_x96`, with no liquidity.
    pub fn new(sqrt_price_x96: U256, fee: u32, tick_spacing: i32) -> Result<Self> {
        check_spacing(tick_spacing)?;
        Ok(Self {
            sqrt_price_x96,
            tick: get_tick_at_sqrt_ratio(sqrt_price_x96)?,
            liquidity: 0,
            fee,
            tick_spacing,
            ticks: BTreeMap::new(),
        })
    }

    /// Adds (`delta > 0`, Mint) or removes (Burn) liquidity on `[lower, upper)`. All or nothing:
    /// every check the contract makes (tick range and spacing, both ticks' gross and net, the
    /// active liquidity) runs before anything changes, so on an error the pool is as it was, as
    /// after a revert. Replays ignore errors (a burn of liquidity minted before the data began)
    /// and go on with this state.
    pub fn modify_position(&mut self, lower: i32, upper: i32, delta: i128) -> Result<()> {
        check_spacing(self.tick_spacing)?;
        if lower >= upper || lower < MIN_TICK || upper > MAX_TICK {
            return Err(MathError::TickOutOfRange);
        }
        if lower % self.tick_spacing != 0 || upper % self.tick_spacing != 0 {
            return Err(MathError::TickNotOnSpacing);
        }
        let after = |t: i32, net: i128| -> Result<TickInfo> {
            let info = self.ticks.get(&t).copied().unwrap_or_default();
            Ok(TickInfo {
                liquidity_gross: add_delta(info.liquidity_gross, delta)?,
                liquidity_net: info
                    .liquidity_net
                    .checked_add(net)
                    .ok_or(MathError::LiquidityMath)?,
            })
        };
        let lower_info = after(lower, delta)?;
        let upper_info = after(upper, delta.checked_neg().ok_or(MathError::LiquidityMath)?)?;
        let active = if self.tick >= lower && self.tick < upper {
            Some(add_delta(self.liquidity, delta)?)
        } else {
            None
        };
        for (t, info) in [(lower, lower_info), (upper, upper_info)] {
            if info.liquidity_gross == 0 {
                self.ticks.remove(&t);
            } else {
                self.ticks.insert(t, info);
            }
        }
        if let Some(l) = active {
            self.liquidity = l;
        }
        Ok(())
    }

    /// The next initialized tick in the swap's direction within one bitmap word, or the word's edge.
    fn next_tick_within_one_word(&self, tick: i32, lte: bool) -> (i32, bool) {
        let s = self.tick_spacing;
        let compressed = tick.div_euclid(s);
        if lte {
            let word_start = (compressed >> 8) << 8;
            let (lo, hi) = (word_start * s, compressed * s);
            match self.ticks.range(lo..=hi).next_back() {
                Some((&t, _)) => (t, true),
                None => (lo, false),
            }
        } else {
            let c = compressed + 1;
            let word_end = ((c >> 8) << 8) + 255;
            let (lo, hi) = (c * s, word_end * s);
            match self.ticks.range(lo..=hi).next() {
                Some((&t, _)) => (t, true),
                None => (hi, false),
            }
        }
    }

    /// Simulates a swap without changing the pool. `amount_specified > 0` is exact input, `< 0`
    /// exact output; `sqrt_price_limit` defaults to the extreme price in the swap's direction.
    #[inline]
    pub fn swap(
        &self,
        zero_for_one: bool,
        amount_specified: I256,
        sqrt_price_limit: Option<U256>,
    ) -> Result<SwapResult> {
        self.swap_with_steps(zero_for_one, amount_specified, sqrt_price_limit, |_| {})
    }

    /// [`Self::swap`], telling `on_step` about every step of the swap loop: what a pool that
    /// splits its fee (Slipstream's gauge) needs to follow the swap.
    pub fn swap_with_steps(
        &self,
        zero_for_one: bool,
        amount_specified: I256,
        sqrt_price_limit: Option<U256>,
        on_step: impl FnMut(SwapStep),
    ) -> Result<SwapResult> {
        self.swap_inner::<true>(zero_for_one, amount_specified, sqrt_price_limit, on_step)
    }

    /// [`Self::swap`] for a quote: the amounts, the sqrt price, the liquidity and the ticks
    /// crossed are the swap's, but `tick` is not worked out from a sqrt price that ends between
    /// ticks (it is the tick where the last step started), which saves a `getTickAtSqrtRatio`
    /// per quote. Never apply its result to a pool.
    #[inline]
    pub fn quote(
        &self,
        zero_for_one: bool,
        amount_specified: I256,
        sqrt_price_limit: Option<U256>,
    ) -> Result<SwapResult> {
        self.swap_inner::<false>(zero_for_one, amount_specified, sqrt_price_limit, |_| {})
    }

    #[inline]
    fn swap_inner<const EXACT_TICK: bool>(
        &self,
        zero_for_one: bool,
        amount_specified: I256,
        sqrt_price_limit: Option<U256>,
        mut on_step: impl FnMut(SwapStep),
    ) -> Result<SwapResult> {
        check_spacing(self.tick_spacing)?;
        if amount_specified.is_zero() {
            return Err(MathError::ZeroAmount);
        }
        let one = U256::from(1);
        let limit = sqrt_price_limit.unwrap_or(if zero_for_one {
            MIN_SQRT_RATIO + one
        } else {
            MAX_SQRT_RATIO - one
        });
        let valid = if zero_for_one {
            limit < self.sqrt_price_x96 && limit > MIN_SQRT_RATIO
        } else {
            limit > self.sqrt_price_x96 && limit < MAX_SQRT_RATIO
        };
        if !valid {
            return Err(MathError::InvalidPriceLimit);
        }
        let exact_input = amount_specified.is_positive();
        let mut remaining = amount_specified;
        let mut calculated = I256::ZERO;
        let mut sqrt_price = self.sqrt_price_x96;
        let mut tick = self.tick;
        let mut liquidity = self.liquidity;
        let mut crossed = 0;
        while !remaining.is_zero() && sqrt_price != limit {
            let start = sqrt_price;
            let (mut next, initialized) = self.next_tick_within_one_word(tick, zero_for_one);
            next = next.clamp(MIN_TICK, MAX_TICK);
            let sqrt_next = get_sqrt_ratio_at_tick(next)?;
            let target =
                if (zero_for_one && sqrt_next < limit) || (!zero_for_one && sqrt_next > limit) {
                    limit
                } else {
                    sqrt_next
                };
            let step = compute_swap_step(sqrt_price, target, liquidity, remaining, self.fee)?;
            sqrt_price = step.sqrt_price_next;
            if exact_input {
                remaining -= i256(step.amount_in + step.fee_amount)?;
                calculated -= i256(step.amount_out)?;
            } else {
                remaining += i256(step.amount_out)?;
                calculated += i256(step.amount_in + step.fee_amount)?;
            }
            let crosses = sqrt_price == sqrt_next && initialized;
            on_step(SwapStep {
                fee_amount: step.fee_amount,
                liquidity,
                crossed: crosses.then_some(next),
            });
            if sqrt_price == sqrt_next {
                if initialized {
                    let net = self.ticks.get(&next).map_or(0, |t| t.liquidity_net);
                    liquidity = add_delta(liquidity, if zero_for_one { -net } else { net })?;
                    crossed += 1;
                }
                tick = if zero_for_one { next - 1 } else { next };
            } else if EXACT_TICK && sqrt_price != start {
                tick = get_tick_at_sqrt_ratio(sqrt_price)?;
            }
        }
        let (amount0, amount1) = if zero_for_one == exact_input {
            (amount_specified - remaining, calculated)
        } else {
            (calculated, amount_specified - remaining)
        };
        Ok(SwapResult {
            amount0,
            amount1,
            sqrt_price_x96: sqrt_price,
            tick,
            liquidity,
            ticks_crossed: crossed,
        })
    }

    /// Moves the pool to the state after `r`.
    pub fn apply(&mut self, r: &SwapResult) {
        self.sqrt_price_x96 = r.sqrt_price_x96;
        self.tick = r.tick;
        self.liquidity = r.liquidity;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> V3Pool {
        let mut p = V3Pool::new(U256::from(1) << 96usize, 3000, 60).unwrap();
        p.modify_position(-600, 600, 1_000_000_000_000_000_000)
            .unwrap();
        p.modify_position(-120, 120, 5_000_000_000_000_000_000)
            .unwrap();
        p
    }

    #[test]
    fn exact_in_then_back_loses_fees_and_crosses_ticks() {
        let p = pool();
        let r = p
            .swap(
                true,
                I256::try_from(45_000_000_000_000_000u128).unwrap(),
                None,
            )
            .unwrap();
        assert!(
            r.amount0 == I256::try_from(45_000_000_000_000_000u128).unwrap()
                && r.amount1.is_negative(),
            "{r:?}"
        );
        assert!(r.ticks_crossed >= 1 && r.tick < -120, "{r:?}");
        assert_eq!(r.liquidity, 1_000_000_000_000_000_000);
        // Exact output for what exact input gave back needs no more input.
        let out = p.swap(true, r.amount1, None).unwrap();
        assert_eq!(out.amount1, r.amount1);
        assert!(out.amount0 <= r.amount0);
    }

    #[test]
    fn price_limit_stops_the_swap() {
        let p = pool();
        let limit = get_sqrt_ratio_at_tick(-50).unwrap();
        let r = p
            .swap(true, I256::try_from(10u128.pow(24)).unwrap(), Some(limit))
            .unwrap();
        assert_eq!(r.sqrt_price_x96, limit);
        assert!(p.swap(true, I256::ONE, Some(p.sqrt_price_x96)).is_err());
    }

    #[test]
    fn burning_everything_clears_ticks() {
        let mut p = pool();
        p.modify_position(-120, 120, -5_000_000_000_000_000_000)
            .unwrap();
        p.modify_position(-600, 600, -1_000_000_000_000_000_000)
            .unwrap();
        assert!(p.ticks.is_empty());
        assert_eq!(p.liquidity, 0);
    }

    #[test]
    fn a_failed_modify_position_changes_nothing() {
        let e18 = 1_000_000_000_000_000_000i128;
        let mut p = pool();
        let before = p.clone();
        // The lower tick can give 3e18 back, the upper (1e18 gross) cannot.
        assert!(p.modify_position(-120, 600, -3 * e18).is_err());
        assert_eq!(p, before);
        // An uninitialized lower tick underflows: no empty tick may be left behind.
        assert!(p.modify_position(-60, 600, -e18).is_err());
        assert_eq!(p, before);
        // Both ticks take i128::MAX; the active liquidity then overflows u128.
        p.modify_position(-60, 60, i128::MAX).unwrap();
        let before = p.clone();
        assert!(p.modify_position(-180, 180, i128::MAX).is_err());
        assert_eq!(p, before);
        // The net of a shared lower tick overflows i128 although its gross fits.
        assert!(p.modify_position(-60, 180, i128::MAX).is_err());
        assert_eq!(p, before);
    }

    #[test]
    fn ticks_off_the_spacing_are_refused() {
        let mut p = pool();
        let before = p.clone();
        assert!(p.modify_position(-61, 60, 1).is_err());
        assert!(p.modify_position(-60, 61, 1).is_err());
        assert_eq!(p, before);
    }

    #[test]
    fn a_zero_tick_spacing_is_an_error_not_a_division_by_zero() {
        assert!(V3Pool::new(U256::from(1) << 96usize, 3000, 0).is_err());
        let mut p = pool();
        p.tick_spacing = 0;
        assert!(p.modify_position(-60, 60, 1).is_err());
        assert!(p.swap(true, I256::ONE, None).is_err());
        assert!(p.swap(false, I256::ONE, None).is_err());
    }
}
