//! The event -> state step: what one pool event does to a pool's state, as history has it
//! ([`apply`]) and on a pool our own trades have moved away from history ([`replay_flow`]).

use std::collections::BTreeMap;

use alloy_primitives::{I256, U256, U512};
use dexlab_amm::solidly::SolidlyPool;
use dexlab_amm::v3::V3Pool;
use serde::{Deserialize, Serialize};

use crate::state::{Family, Market, PoolMeta, PoolState, u256_to_f64};

/// The flow of a historical swap: what its sender sold. Replayed as an exact-input swap on a pool
/// our own trades have moved away from history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapIn {
    pub zero_for_one: bool,
    pub amount_in: U256,
}

/// The fee (pips) an event's swap paid, where the data shows one that may differ from the fee in
/// force: an Aerodrome swap's `Fees` event, a Slipstream swap's fee as [`crate::fees`] recovers
/// it. Applying the event makes it the pool's fee. Four bytes rather than an `Option<u32>`, and
/// outside the boxed [`SwapIn`], so that events stay as small and as quick to apply as before:
/// state replay reads tens of millions of them a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PaidFee(u32);

impl PaidFee {
    /// Not shown: the fee in force.
    pub const UNKNOWN: PaidFee = PaidFee(u32::MAX);

    pub fn new(fee: Option<u32>) -> Self {
        fee.filter(|&f| f != u32::MAX)
            .map_or(Self::UNKNOWN, PaidFee)
    }

    pub fn get(self) -> Option<u32> {
        (self.0 != u32::MAX).then_some(self.0)
    }

    pub fn is_unknown(&self) -> bool {
        self.0 == u32::MAX
    }
}

impl Default for PaidFee {
    fn default() -> Self {
        Self::UNKNOWN
    }
}

impl Serialize for PaidFee {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(s)
    }
}

impl<'de> Deserialize<'de> for PaidFee {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<u32>::deserialize(d).map(PaidFee::new)
    }
}

/// One pool-state update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Update {
    /// V2/Solidly reserves after the event, and the swap that caused it when the `Swap` log follows
    /// its `Sync` (mints, burns, `sync()` and `skim()` have none).
    Reserves {
        reserve0: U256,
        reserve1: U256,
        /// Boxed: most replays never read it, and it would double the size of every event.
        swap: Option<Box<SwapIn>>,
        #[serde(default, skip_serializing_if = "PaidFee::is_unknown")]
        fee: PaidFee,
    },
    /// V3 state after a swap, and the swap's input.
    V3Swap {
        sqrt_price_x96: U256,
        tick: i32,
        liquidity: u128,
        swap: Option<Box<SwapIn>>,
        #[serde(default, skip_serializing_if = "PaidFee::is_unknown")]
        fee: PaidFee,
    },
    /// V3 position change (mint: positive, burn: negative).
    V3Liquidity {
        lower: i32,
        upper: i32,
        delta: i128,
    },
    V3Initialize {
        sqrt_price_x96: U256,
        tick: i32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolEvent {
    pub pool: u32,
    /// Priority fee per gas (wei) its transaction paid; meaningful only when the tape
    /// `has_priority_fees` (the data records fees). `u64::MAX` for transactions nobody can
    /// outbid (OP-stack deposits, blocks without a base fee).
    pub priority_fee: u64,
    pub update: Update,
}

/// Applies one update to the market. This is the whole of state replay: field copies, plus a tick
/// map update for V3 liquidity changes.
#[inline]
pub fn apply(market: &mut Market, e: &PoolEvent) {
    let i = e.pool as usize;
    apply_state(&market.pools[i], &mut market.states[i], &e.update);
}

/// Applies one update to one pool's state, as history has it.
#[inline]
pub fn apply_state(meta: &PoolMeta, state: &mut PoolState, update: &Update) {
    match (update, meta.family) {
        (
            Update::Reserves {
                reserve0,
                reserve1,
                fee,
                ..
            },
            Family::Solidly,
        ) => match state {
            PoolState::Solidly(p) => {
                p.reserve0 = *reserve0;
                p.reserve1 = *reserve1;
                if let Some(fee) = fee.get() {
                    p.fee = fee;
                }
            }
            _ => {
                *state = PoolState::Solidly(SolidlyPool::new(
                    *reserve0,
                    *reserve1,
                    meta.decimals0,
                    meta.decimals1,
                    meta.stable,
                    fee.get().unwrap_or(meta.fee),
                ))
            }
        },
        (
            Update::Reserves {
                reserve0, reserve1, ..
            },
            _,
        ) => {
            *state = PoolState::V2 {
                reserve0: *reserve0,
                reserve1: *reserve1,
            }
        }
        (
            Update::V3Swap {
                sqrt_price_x96,
                tick,
                liquidity,
                fee,
                ..
            },
            _,
        ) => match state {
            PoolState::V3(p) => {
                p.sqrt_price_x96 = *sqrt_price_x96;
                p.tick = *tick;
                p.liquidity = *liquidity;
                if let Some(fee) = fee.get() {
                    p.fee = fee;
                }
            }
            _ => {
                *state = PoolState::V3(V3Pool {
                    sqrt_price_x96: *sqrt_price_x96,
                    tick: *tick,
                    liquidity: *liquidity,
                    fee: fee.get().unwrap_or(meta.fee),
                    tick_spacing: meta.tick_spacing,
                    ticks: BTreeMap::new(),
                })
            }
        },
        (
            Update::V3Liquidity {
                lower,
                upper,
                delta,
            },
            _,
        ) => {
            if let PoolState::V3(p) = state {
                // A burn of liquidity minted before the data began can underflow: the next swap
                // event re-anchors the active liquidity anyway.
                let _ = p.modify_position(*lower, *upper, *delta);
            }
        }
        (
            Update::V3Initialize {
                sqrt_price_x96,
                tick,
            },
            _,
        ) => {
            *state = PoolState::V3(V3Pool {
                sqrt_price_x96: *sqrt_price_x96,
                tick: *tick,
                liquidity: 0,
                fee: meta.fee,
                tick_spacing: meta.tick_spacing,
                ticks: BTreeMap::new(),
            })
        }
    }
}

/// What a historical event does to a pool our own trades have moved away from history: the
/// pool is `state`; `hist_before` is history's V2/Solidly reserves before the event and
/// `hist_after` history's state after it.
///
/// Swaps are re-executed as flows: their input, exact-in, through the exact pool math on our
/// state, **limited at the price history's swap left** (a V3 price limit; on V2 and volatile
/// Solidly pools the part of the input that brings the reserve ratio to history's, to within
/// about 1e-12, never past it). A recorded flow does not know our trade happened: replayed in full, an
/// arbitrageur's swap that closed a gap in history would overshoot on a pool we had already
/// moved, and open a gap that never existed for us to take again. With the limit, flows pull our
/// state back toward history and never past it; a swap that finds our price already past
/// history's does not execute (which also skips noise flow that would have moved the price our
/// way: the pessimistic side). Stable Solidly pools, which have no simple price limit, replay the
/// whole input.
///
/// A `Sync` without its `Swap` whose reserves moved in opposite directions is taken as a swap of
/// the reserve that rose; one whose reserves rose is a deposit (a mint keeps what was sent) and
/// one whose reserves fell a withdrawal of the same share of the pool (a burn pays out its share);
/// V3 mints and burns change the tick map and the active liquidity. Returns `false` when the flow
/// cannot execute on our state (the historical sender's transaction would have reverted), leaving
/// `state` as it was.
pub fn replay_flow(
    meta: &PoolMeta,
    state: &mut PoolState,
    hist_before: Option<(U256, U256)>,
    hist_after: &PoolState,
    update: &Update,
) -> bool {
    let swap = match update {
        Update::Reserves { swap: Some(s), .. } => **s,
        Update::Reserves {
            reserve0,
            reserve1,
            swap: None,
            ..
        } => {
            let Some((h0, h1)) = hist_before else {
                return false;
            };
            match (
                *reserve0 > h0,
                *reserve1 > h1,
                *reserve0 < h0,
                *reserve1 < h1,
            ) {
                (true, _, _, true) => SwapIn {
                    zero_for_one: true,
                    amount_in: *reserve0 - h0,
                },
                (_, true, true, _) => SwapIn {
                    zero_for_one: false,
                    amount_in: *reserve1 - h1,
                },
                _ => return reserve_change(state, (h0, h1), (*reserve0, *reserve1)),
            }
        }
        // A swap of nothing (both amounts zero) changes nothing.
        Update::V3Swap { swap: None, .. } => return true,
        Update::V3Swap { swap: Some(s), .. } => **s,
        Update::V3Liquidity {
            lower,
            upper,
            delta,
        } => {
            // All or nothing: a failed update leaves the tick map as it was.
            return match state {
                PoolState::V3(p) => p.modify_position(*lower, *upper, *delta).is_ok(),
                _ => false,
            };
        }
        Update::V3Initialize { .. } => {
            apply_state(meta, state, update);
            return true;
        }
    };
    // The fee this swap paid, where the data shows it, is the pool's from now on.
    if let Update::Reserves { fee, .. } | Update::V3Swap { fee, .. } = update
        && let Some(fee) = fee.get()
    {
        state.set_fee(fee);
    }
    swap_toward(meta, state, swap, hist_after)
}

/// `swap` on our state, stopped at `limit`'s price (see [`replay_flow`]). Changes the state only
/// when it succeeds.
fn swap_toward(meta: &PoolMeta, state: &mut PoolState, swap: SwapIn, limit: &PoolState) -> bool {
    let zfo = swap.zero_for_one;
    match (&mut *state, limit) {
        (PoolState::V3(p), PoolState::V3(h)) => {
            let lim = h.sqrt_price_x96;
            // Selling token0 lowers the price: nothing to do at or below history's.
            if (zfo && p.sqrt_price_x96 <= lim) || (!zfo && p.sqrt_price_x96 >= lim) {
                return true;
            }
            let Ok(amount) = I256::try_from(swap.amount_in) else {
                return false;
            };
            match p.swap(zfo, amount, Some(lim)) {
                Ok(r) => {
                    p.apply(&r);
                    true
                }
                Err(_) => false,
            }
        }
        (PoolState::V2 { .. }, _) | (PoolState::Solidly(SolidlyPool { stable: false, .. }), _) => {
            let Some((h0, h1)) = ratio_of(limit) else {
                return state.swap_exact_in(meta, zfo, swap.amount_in).is_ok();
            };
            let Some((r0, r1)) = ratio_of(state).filter(|(a, b)| !a.is_zero() && !b.is_zero())
            else {
                return false;
            };
            if side(zfo, (r0, r1), (h0, h1)).is_ge() {
                return true;
            }
            let fits = |x: U256| {
                let mut s = state.clone();
                s.swap_exact_in(meta, zfo, x).is_ok()
                    && ratio_of(&s).is_some_and(|r| side(zfo, r, (h0, h1)).is_le())
            };
            let amount = if fits(swap.amount_in) {
                swap.amount_in
            } else {
                // The input that brings our price to history's: the constant-product solution in
                // floats, stepped down until the exact math confirms it does not cross (to within
                // about 1e-12 of the largest such input); bisection where the floats fail.
                let fee_leaves = matches!(state, PoolState::Solidly(_));
                let fee = state.fee().unwrap_or(meta.fee);
                let mut x = clip_input(zfo, (r0, r1), (h0, h1), fee, fee_leaves)
                    .filter(|x| *x < swap.amount_in)
                    .unwrap_or(U256::ZERO);
                for _ in 0..4 {
                    if x.is_zero() || fits(x) {
                        break;
                    }
                    x = x.saturating_sub(x / U256::from(1_000_000_000_000u64) + U256::ONE);
                }
                if x.is_zero() || !fits(x) {
                    let (mut lo, mut hi) = (U256::ZERO, swap.amount_in);
                    while hi - lo > U256::ONE {
                        let mid = lo + ((hi - lo) >> 1);
                        if fits(mid) { lo = mid } else { hi = mid }
                    }
                    x = lo;
                }
                x
            };
            amount.is_zero() || state.swap_exact_in(meta, zfo, amount).is_ok()
        }
        _ => state.swap_exact_in(meta, zfo, swap.amount_in).is_ok(),
    }
}

/// The input that moves a constant-product pool `(r0, r1)` to the reserve ratio of `target`, in
/// floats: with `a` the reserve sold into, `b` the other and `g = 1 - fee`, `x` solves
/// `(a + g x)(a + x) = a b t`, `t` the target's ratio of `a`'s reserve to `b`'s (the root in the
/// form without cancellation). When the fee leaves the pool (`fee_leaves`, Solidly's PoolFees)
/// the input reserve grows by `g x` only, and `x` solves `(a + g x)^2 = a b t`.
fn clip_input(
    zero_for_one: bool,
    (r0, r1): (U256, U256),
    (h0, h1): (U256, U256),
    fee_pips: u32,
    fee_leaves: bool,
) -> Option<U256> {
    let f = u256_to_f64;
    let (a, b, t) = if zero_for_one {
        (f(r0), f(r1), f(h0) / f(h1))
    } else {
        (f(r1), f(r0), f(h1) / f(h0))
    };
    let g = 1.0 - f64::from(fee_pips) / 1e6;
    let excess = a * b * t - a * a;
    if fee_leaves {
        // g x = sqrt(a b t) - a = excess / (sqrt(a b t) + a).
        let x = excess / ((a * b * t).sqrt() + a) / g;
        return (x.is_finite() && (1.0..1e38).contains(&x)).then(|| U256::from(x as u128));
    }
    let disc = a * a * (1.0 + g) * (1.0 + g) + 4.0 * g * excess;
    let x = 2.0 * excess / (a * (1.0 + g) + disc.sqrt());
    (x.is_finite() && (1.0..1e38).contains(&x)).then(|| U256::from(x as u128))
}

/// Where reserves `ours` price token0 against `target`'s, in the direction a swap moves it:
/// `Less` before the target, `Equal` at it, `Greater` past it. Exact (cross products in 512 bits).
fn side(zero_for_one: bool, ours: (U256, U256), target: (U256, U256)) -> std::cmp::Ordering {
    let o = (U512::from(ours.1) * U512::from(target.0))
        .cmp(&(U512::from(target.1) * U512::from(ours.0)));
    // Selling token0 lowers its price (reserve1 / reserve0).
    if zero_for_one { o.reverse() } else { o }
}

fn ratio_of(s: &PoolState) -> Option<(U256, U256)> {
    match s {
        PoolState::V2 { reserve0, reserve1 } => Some((*reserve0, *reserve1)),
        PoolState::Solidly(p) if !p.stable => Some((p.reserve0, p.reserve1)),
        _ => None,
    }
}

/// Deposits and withdrawals on a diverged V2/Solidly pool (see [`replay_flow`]).
fn reserve_change(state: &mut PoolState, before: (U256, U256), after: (U256, U256)) -> bool {
    let (s0, s1) = match state {
        PoolState::V2 { reserve0, reserve1 } => (reserve0, reserve1),
        PoolState::Solidly(p) => (&mut p.reserve0, &mut p.reserve1),
        _ => return false,
    };
    let moved = |s: &mut U256, before: U256, after: U256| {
        if after >= before {
            *s += after - before;
        } else {
            let taken = dexlab_amm::full_math::mul_div(*s, before - after, before.max(U256::ONE))
                .unwrap_or(*s);
            *s -= taken.min(*s);
        }
    };
    moved(s0, before.0, after.0);
    moved(s1, before.1, after.1);
    true
}

#[cfg(test)]
mod tests {
    use crate::state::{Family, PoolMeta, PoolState};
    use alloy_primitives::{Address, U256};
    use dexlab_amm::v2::get_amount_out;

    use super::{SwapIn, Update, replay_flow};

    fn meta() -> PoolMeta {
        PoolMeta {
            address: Address::with_last_byte(1),
            family: Family::V2,
            dex: "uniswap-v2".into(),
            token0: Address::with_last_byte(2),
            token1: Address::with_last_byte(3),
            symbol0: "A".into(),
            symbol1: "B".into(),
            decimals0: 18,
            decimals1: 18,
            fee: 3000,
            tick_spacing: 1,
            stable: false,
        }
    }

    fn v2(r0: u64, r1: u64) -> PoolState {
        PoolState::V2 {
            reserve0: U256::from(r0),
            reserve1: U256::from(r1),
        }
    }

    fn reserves(r0: u64, r1: u64, swap: Option<SwapIn>) -> Update {
        Update::Reserves {
            reserve0: U256::from(r0),
            reserve1: U256::from(r1),
            swap: swap.map(Box::new),
            fee: super::PaidFee::UNKNOWN,
        }
    }

    #[test]
    fn events_round_trip_through_serde() {
        let events = [
            super::PoolEvent {
                pool: 3,
                priority_fee: u64::MAX,
                update: Update::Reserves {
                    reserve0: U256::from(1),
                    reserve1: U256::from(2),
                    swap: Some(Box::new(SwapIn {
                        zero_for_one: true,
                        amount_in: U256::MAX,
                    })),
                    fee: super::PaidFee::new(Some(2500)),
                },
            },
            super::PoolEvent {
                pool: 0,
                priority_fee: 7,
                update: Update::V3Liquidity {
                    lower: -887_220,
                    upper: 887_220,
                    delta: i128::MIN,
                },
            },
            super::PoolEvent {
                pool: 1,
                priority_fee: 0,
                update: Update::V3Swap {
                    sqrt_price_x96: U256::from(1u64) << 160,
                    tick: -5,
                    liquidity: u128::MAX,
                    swap: None,
                    fee: super::PaidFee::UNKNOWN,
                },
            },
        ];
        for e in events {
            let text = serde_json::to_string(&e).unwrap();
            assert_eq!(
                serde_json::from_str::<super::PoolEvent>(&text).unwrap(),
                e,
                "{text}"
            );
        }
    }

    #[test]
    fn flows_on_a_diverged_pair() {
        let m = meta();
        let u = U256::from;
        let hist = Some((u(1_000_000), u(1_000_000)));
        // History: 100,000 of token0 sold into (1M, 1M).
        let out = get_amount_out(u(100_000), u(1_000_000), u(1_000_000), 3000).unwrap();
        let after = v2(1_100_000, 1_000_000 - out.to::<u64>());
        let swap = SwapIn {
            zero_for_one: true,
            amount_in: u(100_000),
        };
        let sold = reserves(0, 0, Some(swap));
        // Our pool prices token0 higher (2.0 against history's 1.0): the whole input runs through
        // the constant-product math on our state.
        let mut ours = v2(1_000_000, 2_000_000);
        assert!(replay_flow(&m, &mut ours, hist, &after, &sold));
        let o = get_amount_out(u(100_000), u(1_000_000), u(2_000_000), 3000).unwrap();
        assert_eq!(ours, v2(1_100_000, 2_000_000 - o.to::<u64>()));
        // Our pool sits a little above history's post-swap price: the flow stops there, with
        // the largest input that does not push past it.
        let mut ours = v2(1_000_000, 900_000);
        assert!(replay_flow(&m, &mut ours, hist, &after, &sold));
        let PoolState::V2 { reserve0, reserve1 } = ours else {
            unreachable!()
        };
        let used = reserve0 - u(1_000_000);
        assert!(used > U256::ZERO && used < u(100_000), "{used}");
        let (h0, h1) = (u(1_100_000), u(1_000_000) - out);
        assert!(reserve1 * h0 >= h1 * reserve0, "not past history's price");
        let one_more = get_amount_out(used + U256::ONE, u(1_000_000), u(900_000), 3000).unwrap();
        assert!(
            (u(900_000) - one_more) * h0 < h1 * (reserve0 + U256::ONE),
            "one more unit would have crossed it"
        );
        // Our pool is already past it: the seller does not trade.
        let mut ours = v2(1_000_000, 800_000);
        assert!(replay_flow(&m, &mut ours, hist, &after, &sold));
        assert_eq!(ours, v2(1_000_000, 800_000));
        // A Sync whose reserves moved apart without its Swap is taken as a swap of the one that
        // rose.
        let mut ours = v2(1_000_000, 2_000_000);
        let moved = v2(1_000_500, 999_600);
        assert!(replay_flow(
            &m,
            &mut ours,
            hist,
            &moved,
            &reserves(1_000_500, 999_600, None)
        ));
        let o = get_amount_out(u(500), u(1_000_000), u(2_000_000), 3000).unwrap();
        assert_eq!(ours, v2(1_000_500, 2_000_000 - o.to::<u64>()));
        // A deposit keeps its amounts; a withdrawal takes the same share of our reserves.
        let mut ours = v2(2_000_000, 1_000_000);
        let dep = v2(1_100_000, 1_050_000);
        assert!(replay_flow(
            &m,
            &mut ours,
            hist,
            &dep,
            &reserves(1_100_000, 1_050_000, None)
        ));
        assert_eq!(ours, v2(2_100_000, 1_050_000));
        let mut ours = v2(2_000_000, 1_000_000);
        let wd = v2(900_000, 900_000);
        assert!(replay_flow(
            &m,
            &mut ours,
            hist,
            &wd,
            &reserves(900_000, 900_000, None)
        ));
        assert_eq!(ours, v2(1_800_000, 900_000));
        // A swap that cannot execute on our state leaves it as it was.
        let mut empty = v2(0, 0);
        assert!(!replay_flow(&m, &mut empty, hist, &after, &sold));
        assert_eq!(empty, v2(0, 0));
    }
}
