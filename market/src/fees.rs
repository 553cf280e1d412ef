//! Pool fees that change during a pool's life, recovered from what the pool emits.
//!
//! A listed fee (the manifest's, read once at discovery) is not always the fee a swap pays:
//! Aerodrome's fee manager can set a pool's fee at any block (`PoolFactory.setCustomFee`, an event
//! of the factory, not the pool), and a Slipstream pool asks its factory's swap-fee module for the
//! fee on every swap, which a dynamic module changes with no event at all. Both are recovered
//! from the swaps themselves, so the backtester, the data checks and the live engine price the
//! next swap with the fee in force:
//! - **Aerodrome** moves each input's fee out to its `PoolFees` contract and says how much in a
//!   `Fees` event: `floor(amount_in · bps / 10_000)` with an integer `bps`, which
//!   [`solidly_fee_paid`] solves for.
//! - **Slipstream**'s `Swap` event carries no fee, but the state after the swap pins it down:
//!   [`infer_v3_fee`] finds the fee under which the exact pool math reproduces the swap.
//!
//! A recovered fee travels with its swap's event ([`crate::PaidFee`]) and becomes the pool
//! state's fee when the event is applied.

use alloy_primitives::{I256, U256};
use dexlab_amm::v3::V3Pool;

use crate::state::{PoolMeta, PoolState};
use crate::update::{PaidFee, PoolEvent, Update, apply_state};

/// One million pips: a fee of 100 %. No pool charges that; the search stops below it.
const PIPS: u32 = 1_000_000;

/// The fee (pips) of an Aerodrome swap of `amount_in` whose `Fees` event says it paid `paid`:
/// the pool charges `floor(amount_in · bps / 10_000)` with `bps` a whole number of basis points.
/// `prefer` (the fee in force) wins when it fits; otherwise the only basis-point fee that fits.
/// `None` when none fits, or when several do and `prefer` is not one of them (a swap of fewer
/// than 10,000 units can fit more than one).
pub fn solidly_fee_paid(amount_in: U256, paid: U256, prefer: Option<u32>) -> Option<u32> {
    if amount_in.is_zero() {
        return None;
    }
    let ten_k = U256::from(10_000u32);
    let fits = |bps: u32| amount_in.saturating_mul(U256::from(bps)) / ten_k == paid;
    if let Some(p) = prefer
        && p % 100 == 0
        && fits(p / 100)
    {
        return Some(p);
    }
    // The smallest candidate: ceil(paid · 10_000 / amount_in).
    let lo = paid.checked_mul(ten_k)?.div_ceil(amount_in);
    let lo = u32::try_from(lo).ok().filter(|&b| b <= 10_000)?;
    (fits(lo) && !(lo < 10_000 && fits(lo + 1))).then_some(lo * 100)
}

/// Whether an exact-input swap of `amount_in` on `pool`, as it stands (its fee included), ends in
/// `after` (sqrt price, tick, active liquidity): without a price limit, or limited at `after`'s
/// price and spending all of the input (how an exact-output swap's input replays).
pub fn reproduces(
    pool: &V3Pool,
    zero_for_one: bool,
    amount_in: I256,
    after: (U256, i32, u128),
) -> bool {
    let ends = |r: &dexlab_amm::v3::SwapResult| (r.sqrt_price_x96, r.tick, r.liquidity) == after;
    if pool
        .swap(zero_for_one, amount_in, None)
        .is_ok_and(|r| ends(&r))
    {
        return true;
    }
    pool.swap(zero_for_one, amount_in, Some(after.0))
        .is_ok_and(|r| ends(&r) && (if zero_for_one { r.amount0 } else { r.amount1 }) == amount_in)
}

/// The fee (pips) under which `pool` reproduces an exact-input swap of `amount_in` ending in
/// `after` ([`reproduces`]), the one nearest the pool's own fee when several do; `None` when no
/// fee does (the state is not exact, or the swap is too small to tell a fee apart from the pool's
/// own). Sells move the price less as the fee grows, so a bisection on the fee finds where the
/// swap's end price lies, and the fees around it are checked exactly.
pub fn infer_v3_fee(
    pool: &V3Pool,
    zero_for_one: bool,
    amount_in: U256,
    after: (U256, i32, u128),
) -> Option<u32> {
    let amount = I256::try_from(amount_in).ok().filter(|a| a.is_positive())?;
    let mut p = pool.clone();
    let mut at = |fee: u32| {
        p.fee = fee;
        (
            p.swap(zero_for_one, amount, None)
                .ok()
                .map(|r| r.sqrt_price_x96),
            reproduces(&p, zero_for_one, amount, after),
        )
    };
    // The smallest fee whose swap does not move the price past `after`'s.
    let short_of = |end: Option<U256>| {
        end.is_none_or(|s| {
            if zero_for_one {
                s >= after.0
            } else {
                s <= after.0
            }
        })
    };
    let (mut lo, mut hi) = (0u32, PIPS - 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if short_of(at(mid).0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    // Rounding can put the fee a unit or two either side of the boundary; small swaps fit a range.
    const SPAN: u32 = 64;
    let first = lo.saturating_sub(2);
    let mut fits = Vec::new();
    for fee in first..=(lo + SPAN).min(PIPS - 1) {
        if at(fee).1 {
            fits.push(fee);
        } else if !fits.is_empty() && fee > lo + 2 {
            break;
        }
    }
    let (&min, &max) = (fits.first()?, fits.last()?);
    // A range that runs to the end of the window may go on: only a fee inside it is certain.
    if max == (lo + SPAN).min(PIPS - 1) && pool.fee > max {
        return None;
    }
    Some(pool.fee.clamp(min, max))
}

/// Follows history's state of the pools whose fee can change without a pool event (Slipstream),
/// and marks each of their swaps whose fee is not the one in force with the fee it paid
/// ([`crate::PaidFee`]). The backtester's tape runs it once over a dataset; the live engine
/// block by block; both see the same fees.
#[derive(Debug, Clone)]
pub struct FeeWatch {
    pools: Vec<PoolMeta>,
    /// History's state of each watched pool (`None`: not watched).
    states: Vec<Option<PoolState>>,
    /// Swaps no fee reproduced (their pool's state was not exact): they keep the fee in force.
    pub unexplained: u64,
    /// Fee changes found.
    pub changes: u64,
}

impl FeeWatch {
    /// Watches the pools (`pools`, in state `states`) for which `watch` says so.
    pub fn new(pools: &[PoolMeta], states: &[PoolState], watch: impl Fn(usize) -> bool) -> Self {
        Self {
            pools: pools.to_vec(),
            states: states
                .iter()
                .enumerate()
                .map(|(i, s)| watch(i).then(|| s.clone()))
                .collect(),
            unexplained: 0,
            changes: 0,
        }
    }

    /// Whether any pool is watched (when none is, [`Self::mark`] has nothing to do).
    pub fn is_watching(&self) -> bool {
        self.states.iter().any(Option::is_some)
    }

    /// Applies `events` (in chain order) to the watched pools, setting [`crate::PaidFee`] on
    /// each of their V3 swaps that the fee in force does not reproduce but another fee does.
    pub fn mark<'a>(&mut self, events: impl IntoIterator<Item = &'a mut PoolEvent>) {
        for e in events {
            let i = e.pool as usize;
            let (Some(Some(state)), Some(meta)) = (self.states.get_mut(i), self.pools.get(i))
            else {
                continue;
            };
            if let (
                PoolState::V3(p),
                Update::V3Swap {
                    sqrt_price_x96,
                    tick,
                    liquidity,
                    swap: Some(s),
                    fee: paid,
                },
            ) = (&*state, &mut e.update)
                && paid.is_unknown()
            {
                let after = (*sqrt_price_x96, *tick, *liquidity);
                let fits_now = I256::try_from(s.amount_in)
                    .is_ok_and(|a| reproduces(p, s.zero_for_one, a, after));
                if !fits_now {
                    match infer_v3_fee(p, s.zero_for_one, s.amount_in, after) {
                        Some(fee) if fee != p.fee => {
                            *paid = PaidFee::new(Some(fee));
                            self.changes += 1;
                        }
                        Some(_) => {}
                        None => self.unexplained += 1,
                    }
                }
            }
            apply_state(meta, state, &e.update);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::SwapIn;
    use dexlab_amm::tick_math::get_sqrt_ratio_at_tick;

    fn pool(fee: u32) -> V3Pool {
        let mut p = V3Pool::new(get_sqrt_ratio_at_tick(0).unwrap(), fee, 10).unwrap();
        p.modify_position(-600, 600, 10i128.pow(21)).unwrap();
        p.modify_position(-20, 40, 10i128.pow(20)).unwrap();
        p
    }

    #[test]
    fn the_aerodrome_fee_comes_back_from_what_a_swap_paid() {
        let u = U256::from;
        for bps in [0u32, 1, 5, 25, 30, 100, 300] {
            for amount in [10_000u64, 123_457, 10u64.pow(18) + 7] {
                let paid = u(amount) * u(u64::from(bps)) / u(10_000);
                assert_eq!(
                    solidly_fee_paid(u(amount), paid, Some(3000)),
                    Some(bps * 100),
                    "{amount} at {bps} bps"
                );
                assert_eq!(solidly_fee_paid(u(amount), paid, None), Some(bps * 100));
            }
        }
        // 999 units at 30 bps pay 2, as they would at 21..=30 bps: only the fee in force decides.
        assert_eq!(solidly_fee_paid(u(999), u(2), Some(3000)), Some(3000));
        assert_eq!(solidly_fee_paid(u(999), u(2), Some(500)), None);
        assert_eq!(solidly_fee_paid(u(999), u(2), None), None);
        // More than the whole input: no fee fits.
        assert_eq!(solidly_fee_paid(u(1000), u(1001), None), None);
        assert_eq!(solidly_fee_paid(U256::ZERO, U256::ZERO, None), None);
    }

    #[test]
    fn a_v3_fee_is_recovered_from_the_swap_it_priced() {
        let listed = pool(3000);
        for true_fee in [0u32, 100, 500, 2_999, 3_001, 10_000, 100_000] {
            for (zfo, amount) in [
                (true, 10u128.pow(19)),
                (false, 3 * 10u128.pow(17)),
                (true, 2 * 10u128.pow(19)),
            ] {
                let mut real = listed.clone();
                real.fee = true_fee;
                let r = real
                    .swap(zfo, I256::try_from(amount).unwrap(), None)
                    .unwrap();
                let after = (r.sqrt_price_x96, r.tick, r.liquidity);
                assert!(reproduces(
                    &real,
                    zfo,
                    I256::try_from(amount).unwrap(),
                    after
                ));
                assert_eq!(
                    infer_v3_fee(&listed, zfo, U256::from(amount), after),
                    Some(true_fee),
                    "fee {true_fee}, zfo {zfo}, {amount}"
                );
                // An exact-output swap replays as its input, limited at its end price.
                let out = if zfo { r.amount1 } else { r.amount0 };
                let ro = real.swap(zfo, out, None).unwrap();
                let input = if zfo { ro.amount0 } else { ro.amount1 };
                let after_out = (ro.sqrt_price_x96, ro.tick, ro.liquidity);
                assert_eq!(
                    infer_v3_fee(&listed, zfo, input.into_raw(), after_out),
                    Some(true_fee),
                    "exact output, fee {true_fee}, zfo {zfo}"
                );
            }
        }
        // A state that is not history's reproduces under no fee.
        let mut real = listed.clone();
        real.fee = 500;
        let r = real
            .swap(true, I256::try_from(10u64.pow(19)).unwrap(), None)
            .unwrap();
        let mut wrong = listed.clone();
        wrong.liquidity /= 2;
        assert_eq!(
            infer_v3_fee(
                &wrong,
                true,
                U256::from(10u64.pow(19)),
                (r.sqrt_price_x96, r.tick, r.liquidity)
            ),
            None
        );
    }

    #[test]
    fn the_watch_marks_only_swaps_whose_fee_changed() {
        let meta = PoolMeta {
            address: alloy_primitives::Address::with_last_byte(1),
            family: crate::Family::V3,
            dex: "aerodrome-slipstream".into(),
            token0: alloy_primitives::Address::with_last_byte(2),
            token1: alloy_primitives::Address::with_last_byte(3),
            symbol0: "A".into(),
            symbol1: "B".into(),
            decimals0: 18,
            decimals1: 18,
            fee: 3000,
            tick_spacing: 10,
            stable: false,
        };
        let mut market = crate::Market::new(vec![meta]);
        market.states[0] = PoolState::V3(pool(3000));
        let mut chain = pool(3000);
        let mut events = Vec::new();
        for (k, fee) in [3000u32, 3000, 500, 500, 3000].into_iter().enumerate() {
            chain.fee = fee;
            let zfo = k % 2 == 0;
            let amount = U256::from(10u64.pow(18) * (k as u64 + 1));
            let r = chain
                .swap(zfo, I256::try_from(amount).unwrap(), None)
                .unwrap();
            chain.apply(&r);
            events.push(PoolEvent {
                pool: 0,
                priority_fee: 0,
                update: Update::V3Swap {
                    sqrt_price_x96: r.sqrt_price_x96,
                    tick: r.tick,
                    liquidity: r.liquidity,
                    swap: Some(Box::new(SwapIn {
                        zero_for_one: zfo,
                        amount_in: amount,
                    })),
                    fee: PaidFee::UNKNOWN,
                },
            });
        }
        let mut watch = FeeWatch::new(&market.pools, &market.states, |_| true);
        watch.mark(events.iter_mut());
        let marked: Vec<Option<u32>> = events
            .iter()
            .map(|e| match &e.update {
                Update::V3Swap { fee, .. } => fee.get(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(marked, [None, None, Some(500), None, Some(3000)]);
        assert_eq!((watch.changes, watch.unexplained), (2, 0));
        // Applied, the marks give the market the chain's fee.
        for e in &events {
            crate::apply(&mut market, e);
        }
        assert_eq!(market.fee(0), 3000);
        crate::apply(&mut market, &events[2]);
        assert_eq!(market.fee(0), 500);
    }
}
