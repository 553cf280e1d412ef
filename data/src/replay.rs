//! Pool-state replay: the state of every pool after every event, and a check of each swap
//! against dexlab's exact math.
//!
//! V2/Solidly reserves come from `Sync`. V3 state (sqrt price, tick, active liquidity and the
//! per-tick liquidity net) is rebuilt from `Initialize`, `Mint`, `Burn` and `Swap` when the data
//! starts at the pool's creation. When it does not, the first swap seeds price, tick and
//! liquidity, and only ticks touched by later mints and burns are known: a swap that crosses a tick
//! initialized before the data began cannot be reproduced, and is reported as such, after which
//! the replay re-syncs from the event. An RPC snapshot of the ticks (slot0, liquidity, the
//! initialized ticks) at the first block removes that gap; see [`Replayer::seed_v3`].

use std::collections::{BTreeMap, HashMap};

use alloy::primitives::{Address, U256};
use dexlab_amm::solidly::SolidlyPool;
use dexlab_amm::v3::V3Pool;
use dexlab_amm::{tick_math, v2};
use serde::Serialize;

use crate::decode::{Event, decode_log, kind_fits_protocol};
use crate::derive::SyncTracker;
use crate::types::{LogLocation, PoolInfo, Protocol, RawLog};

/// Replay state of one pool.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolState {
    /// Nothing seen yet.
    Unknown,
    Reserves {
        reserve0: U256,
        reserve1: U256,
    },
    V3 {
        pool: V3Pool,
        /// False when the data did not start at the pool's creation and no snapshot seeded it.
        complete_ticks: bool,
    },
}

/// Why a swap was not reproduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mismatch {
    /// The pool's state before the swap is not known (first event of a pool seen mid-history).
    NoPriorState,
    /// The swap crossed a tick initialized before the data begins (its liquidity net is unknown).
    CrossedUnknownTick,
    /// V2/Solidly: the output is below what the formula allows (the pair accepts any smaller
    /// output; reserves still match).
    BelowFormulaBound,
    /// V2/Solidly: the reserves after the swap differ from the Sync.
    ReservesDiffer,
    /// The pool's protocol is not known (no pool metadata).
    UnknownPool,
    /// Solidly swaps need the pool's fee and stable flag from metadata to be checked.
    SolidlyUnchecked,
    /// None of exact input, exact output or a price-limited exact input reproduces the event.
    Unexplained,
}

/// One checked swap.
#[derive(Debug, Clone, PartialEq)]
pub struct SwapCheck {
    pub location: LogLocation,
    pub pool: Address,
    pub result: Result<(), Mismatch>,
}

/// Replays logs in chain order.
#[derive(Debug, Default)]
pub struct Replayer {
    pub infos: HashMap<Address, PoolInfo>,
    pub states: HashMap<Address, PoolState>,
    syncs: SyncTracker,
    /// Solidly pools: the fee each input paid, from the `Fees` event of the transaction (the
    /// pool emits it before its `Sync` and `Swap`).
    fees: SyncTracker,
    /// Slipstream swaps that showed their pool's fee had changed (see [`dexlab_market::fees`]).
    pub fee_changes: u64,
}

impl Replayer {
    pub fn new(pools: &[PoolInfo]) -> Self {
        Self {
            infos: pools.iter().map(|p| (p.address, p.clone())).collect(),
            ..Default::default()
        }
    }

    /// Seeds a V3 pool from a snapshot (slot0, liquidity and every initialized tick's net).
    pub fn seed_v3(
        &mut self,
        pool: Address,
        sqrt_price_x96: U256,
        tick: i32,
        liquidity: u128,
        ticks: BTreeMap<i32, (u128, i128)>,
    ) {
        let Some(info) = self.infos.get(&pool) else {
            return;
        };
        let mut p = V3Pool {
            sqrt_price_x96,
            tick,
            liquidity,
            fee: info.fee,
            tick_spacing: info.tick_spacing.unwrap_or(1),
            ticks: BTreeMap::new(),
        };
        for (t, (gross, net)) in ticks {
            p.ticks.insert(
                t,
                dexlab_amm::v3::TickInfo {
                    liquidity_gross: gross,
                    liquidity_net: net,
                },
            );
        }
        self.states.insert(
            pool,
            PoolState::V3 {
                pool: p,
                complete_ticks: true,
            },
        );
    }

    pub fn state(&self, pool: &Address) -> Option<&PoolState> {
        self.states.get(pool)
    }

    /// Applies one log; returns the check of a swap, `None` for other events. Malformed logs are
    /// skipped (ingestion reports them).
    pub fn apply(&mut self, log: &RawLog) -> Option<SwapCheck> {
        let (kind, ev) = decode_log(log).ok()?;
        let info = self.infos.get(&log.address).cloned();
        if info
            .as_ref()
            .is_some_and(|i| !kind_fits_protocol(kind, i.protocol))
        {
            return None;
        }
        let check = |result| {
            Some(SwapCheck {
                location: log.location(),
                pool: log.address,
                result,
            })
        };
        match ev {
            Event::Sync { reserve0, reserve1 } => {
                self.syncs.record(log, reserve0, reserve1);
                // A Sync not followed by a Swap (mint, burn, skim) still sets the reserves; a swap
                // reads the pre-swap reserves before this overwrite takes effect (below).
                None
            }
            Event::PairSwap {
                amount0_in,
                amount1_in,
                amount0_out,
                amount1_out,
            } => {
                let post = self.syncs.reserves_for(log);
                let pre = match self.states.get(&log.address) {
                    Some(PoolState::Reserves { reserve0, reserve1 }) => {
                        Some((*reserve0, *reserve1))
                    }
                    _ => None,
                };
                if let Some((r0, r1)) = post {
                    self.states.insert(
                        log.address,
                        PoolState::Reserves {
                            reserve0: r0,
                            reserve1: r1,
                        },
                    );
                }
                let Some(info) = info else {
                    return check(Err(Mismatch::UnknownPool));
                };
                let (Some((p0, p1)), Some((q0, q1))) = (pre, post) else {
                    return check(Err(Mismatch::NoPriorState));
                };
                // Solidly pools move each input's fee out to their PoolFees contract before the
                // Sync; V2 pairs keep it. The fee is the one the swap paid (its Fees event). A
                // Solidly swap without one paid nothing (the pool emits Fees for any non-zero
                // fee) or its Fees log was not collected: the metadata's fee and no fee are both
                // tried. A fee manager may change a pool's fee at any block.
                let (fee0, fee1) = {
                    let meta =
                        |i: U256| i.saturating_mul(U256::from(info.fee)) / U256::from(1_000_000u32);
                    let candidates = match (info.protocol, self.fees.take_for(log)) {
                        (Protocol::Solidly, Some((f0, f1))) => vec![(f0, f1)],
                        (Protocol::Solidly, None) => vec![
                            (meta(amount0_in), meta(amount1_in)),
                            (U256::ZERO, U256::ZERO),
                        ],
                        _ => vec![(U256::ZERO, U256::ZERO)],
                    };
                    let after = |p: U256, i: U256, fee: U256, o: U256| {
                        p.checked_add(i.checked_sub(fee)?)?.checked_sub(o)
                    };
                    let Some(fees) = candidates.into_iter().find(|&(f0, f1)| {
                        after(p0, amount0_in, f0, amount0_out) == Some(q0)
                            && after(p1, amount1_in, f1, amount1_out) == Some(q1)
                    }) else {
                        return check(Err(Mismatch::ReservesDiffer));
                    };
                    fees
                };
                if info.protocol == Protocol::Solidly {
                    let Some(stable) = info.stable else {
                        return check(Err(Mismatch::SolidlyUnchecked));
                    };
                    let sp = SolidlyPool::new(
                        p0,
                        p1,
                        info.token0.decimals,
                        info.token1.decimals,
                        stable,
                        info.fee,
                    );
                    let (zfo, ain, fee, aout) = if amount0_in > U256::ZERO {
                        (true, amount0_in, fee0, amount1_out)
                    } else {
                        (false, amount1_in, fee1, amount0_out)
                    };
                    return check(match sp.amount_out_after_fee(ain - fee, zfo) {
                        Ok(o) if o == aout => Ok(()),
                        Ok(o) if aout < o => Err(Mismatch::BelowFormulaBound),
                        _ => Err(Mismatch::Unexplained),
                    });
                }
                let (ain, aout, rin, rout) = if amount0_in > U256::ZERO {
                    (amount0_in, amount1_out, p0, p1)
                } else {
                    (amount1_in, amount0_out, p1, p0)
                };
                let max_out = v2::get_amount_out(ain, rin, rout, info.fee);
                let min_in = v2::get_amount_in(aout, rin, rout, info.fee);
                check(if max_out == Ok(aout) || min_in == Ok(ain) {
                    Ok(())
                } else if matches!(max_out, Ok(o) if aout < o) {
                    Err(Mismatch::BelowFormulaBound)
                } else {
                    Err(Mismatch::Unexplained)
                })
            }
            Event::PairFees { amount0, amount1 } => {
                self.fees.record(log, amount0, amount1);
                None
            }
            Event::PairMint { .. } | Event::PairBurn { .. } => {
                if let Some((r0, r1)) = self.syncs.reserves_for(log) {
                    self.states.insert(
                        log.address,
                        PoolState::Reserves {
                            reserve0: r0,
                            reserve1: r1,
                        },
                    );
                }
                None
            }
            Event::V3Initialize {
                sqrt_price_x96,
                tick,
            } => {
                let (fee, spacing) = info
                    .map(|i| (i.fee, i.tick_spacing.unwrap_or(1)))
                    .unwrap_or((0, 1));
                let pool = V3Pool {
                    sqrt_price_x96,
                    tick,
                    liquidity: 0,
                    fee,
                    tick_spacing: spacing,
                    ticks: BTreeMap::new(),
                };
                self.states.insert(
                    log.address,
                    PoolState::V3 {
                        pool,
                        complete_ticks: true,
                    },
                );
                None
            }
            Event::V3Mint {
                tick_lower,
                tick_upper,
                amount,
                ..
            }
            | Event::V3Burn {
                tick_lower,
                tick_upper,
                amount,
                ..
            } => {
                let delta = if matches!(ev, Event::V3Mint { .. }) {
                    amount as i128
                } else {
                    -(amount as i128)
                };
                if let Some(PoolState::V3 { pool, .. }) = self.states.get_mut(&log.address) {
                    // A burn of liquidity minted before the data began can underflow: keep going.
                    let _ = pool.modify_position(tick_lower, tick_upper, delta);
                }
                None
            }
            Event::V3Swap {
                amount0,
                amount1,
                sqrt_price_x96,
                liquidity,
                tick,
                ..
            } => {
                let Some(info) = info else {
                    return check(Err(Mismatch::UnknownPool));
                };
                let state = self.states.entry(log.address).or_insert(PoolState::Unknown);
                let resync = |state: &mut PoolState, complete: bool| {
                    let spacing = info.tick_spacing.unwrap_or(1);
                    match state {
                        PoolState::V3 { pool, .. } => {
                            pool.sqrt_price_x96 = sqrt_price_x96;
                            pool.tick = tick;
                            pool.liquidity = liquidity;
                        }
                        _ => {
                            *state = PoolState::V3 {
                                pool: V3Pool {
                                    sqrt_price_x96,
                                    tick,
                                    liquidity,
                                    fee: info.fee,
                                    tick_spacing: spacing,
                                    ticks: BTreeMap::new(),
                                },
                                complete_ticks: complete,
                            }
                        }
                    }
                };
                let PoolState::V3 {
                    pool,
                    complete_ticks,
                } = state
                else {
                    resync(state, false);
                    return check(Err(Mismatch::NoPriorState));
                };
                let complete = *complete_ticks;
                let pre_liquidity = pool.liquidity;
                let want = (amount0, amount1, sqrt_price_x96, tick, liquidity);
                let matches = |r: &dexlab_amm::v3::SwapResult| {
                    (r.amount0, r.amount1, r.sqrt_price_x96, r.tick, r.liquidity) == want
                };
                let zfo = amount0.is_positive() || (amount0.is_zero() && amount1.is_negative());
                let (input, output) = if zfo {
                    (amount0, amount1)
                } else {
                    (amount1, amount0)
                };
                let limit_ok = sqrt_price_x96 > tick_math::MIN_SQRT_RATIO
                    && sqrt_price_x96 < tick_math::MAX_SQRT_RATIO;
                let tries = [
                    (input, None),
                    (output, None),
                    (input, limit_ok.then_some(sqrt_price_x96)),
                    (output, limit_ok.then_some(sqrt_price_x96)),
                ];
                let find = |pool: &V3Pool| {
                    tries
                        .iter()
                        .filter(|(a, _)| !a.is_zero())
                        .find_map(|&(a, lim)| pool.swap(zfo, a, lim).ok().filter(matches))
                };
                let mut found = find(pool);
                // A Slipstream pool's fee module can change its fee at any block, with no event:
                // a swap that only another fee reproduces, exactly, shows the new fee.
                if found.is_none()
                    && complete
                    && info.protocol == Protocol::Slipstream
                    && input.is_positive()
                    && let Some(fee) = dexlab_market::fees::infer_v3_fee(
                        pool,
                        zfo,
                        input.into_raw(),
                        (sqrt_price_x96, tick, liquidity),
                    )
                    && fee != pool.fee
                {
                    let was = pool.fee;
                    pool.fee = fee;
                    found = find(pool);
                    if found.is_some() {
                        self.fee_changes += 1;
                    } else {
                        pool.fee = was;
                    }
                }
                let result = match found {
                    Some(r) => {
                        pool.apply(&r);
                        Ok(())
                    }
                    None => {
                        let res = if !complete && liquidity != pre_liquidity {
                            Err(Mismatch::CrossedUnknownTick)
                        } else {
                            Err(Mismatch::Unexplained)
                        };
                        resync(state, complete);
                        res
                    }
                };
                check(result)
            }
            Event::V3Collect { .. } | Event::Unknown => None,
        }
    }
}

/// What `dexlab data verify` reports.
#[derive(Debug, Clone, Serialize, Default)]
pub struct VerifyReport {
    pub swaps: u64,
    pub exact: u64,
    pub mismatches: BTreeMap<String, u64>,
    /// A few mismatches per class, with where they are.
    pub examples: BTreeMap<String, Vec<String>>,
    pub by_pool: BTreeMap<String, (u64, u64)>,
    /// Exact swaps that were so only under a new fee: a Slipstream fee module changed the pool's
    /// fee (the new fee reproduced the swap to the last unit, and stays the pool's).
    pub fee_changes: u64,
}

/// Replays `logs` (chain order) and checks every swap, starting from `snapshots` where given.
pub fn verify(
    logs: &[RawLog],
    pools: &[PoolInfo],
    snapshots: &[crate::snapshot::PoolSnapshot],
) -> crate::Result<VerifyReport> {
    let mut rp = Replayer::new(pools);
    for s in snapshots {
        s.seed(&mut rp)?;
    }
    let mut r = VerifyReport::default();
    for log in logs {
        let Some(c) = rp.apply(log) else { continue };
        r.swaps += 1;
        let e = r.by_pool.entry(format!("{:#x}", c.pool)).or_default();
        e.0 += 1;
        match c.result {
            Ok(()) => {
                r.exact += 1;
                e.1 += 1;
            }
            Err(m) => {
                let k = serde_json::to_value(m)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                *r.mismatches.entry(k.clone()).or_default() += 1;
                let ex = r.examples.entry(k).or_default();
                if ex.len() < 3 {
                    ex.push(format!("pool {:#x} at {}", c.pool, c.location));
                }
            }
        }
    }
    r.fee_changes = rp.fee_changes;
    Ok(r)
}

/// Human explanation of each mismatch class, for reports.
pub fn explain(class: &str) -> &'static str {
    match class {
        "no_prior_state" => {
            "first event of the pool in the data: its state before the swap is unknown (the swap seeds the replay)"
        }
        "crossed_unknown_tick" => {
            "crossed a tick initialized before the data begins (its liquidity net is unknown; the replay re-syncs from the event)"
        }
        "below_formula_bound" => {
            "the trader took less than the constant-product bound (valid on chain; reserves match)"
        }
        "reserves_differ" => "reserves after the swap differ from the pair's Sync",
        "unknown_pool" => "no metadata for the pool (pass a manifest)",
        "solidly_unchecked" => "Solidly pool without its stable flag in the metadata",
        _ => {
            "not reproduced by exact input, exact output or a price-limited swap: a math difference"
        }
    }
}
