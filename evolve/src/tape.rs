//! The replay tape: a dataset decoded once into compact, typed pool-state updates grouped by
//! block, so that thousands of backtests replay it without touching Parquet or ABI decoding.
//!
//! Every update carries the pool's absolute state after the event where the chain gives it (V2 and
//! Solidly `Sync`, V3 `Swap`), so replaying is a field copy. V3 `Mint`/`Burn` change per-tick
//! liquidity net. Pools are seeded from the dataset's RPC snapshot when it has one; otherwise a V3
//! pool starts at its first `Initialize` or `Swap`, and ticks initialized before the data begins
//! are unknown (quotes that would cross them assume no liquidity change there; `dexlab data
//! verify` measures how often that matters).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use alloy_primitives::{Address, I256, U256, U512};
use dexlab_amm::solidly::SolidlyPool;
use dexlab_amm::v3::V3Pool;
use dexlab_data::decode::{Event, decode_log};
use dexlab_data::types::{PoolInfo, Protocol};
use dexlab_data::{dataset, replay, snapshot};
use dexlab_strategy::market::{BlockInfo, Family, Market, PoolMeta, PoolState};

use crate::error::{EvolveError, Result};

/// The flow of a historical swap: what its sender sold. Replayed as an exact-input swap on a pool
/// our own trades have moved away from history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwapIn {
    pub zero_for_one: bool,
    pub amount_in: U256,
}

/// One pool-state update.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// V2/Solidly reserves after the event, and the swap that caused it when the `Swap` log follows
    /// its `Sync` (mints, burns, `sync()` and `skim()` have none).
    Reserves {
        reserve0: U256,
        reserve1: U256,
        /// Boxed: most replays never read it, and it would double the size of every event.
        swap: Option<Box<SwapIn>>,
    },
    /// V3 state after a swap, and the swap's input.
    V3Swap {
        sqrt_price_x96: U256,
        tick: i32,
        liquidity: u128,
        swap: Option<Box<SwapIn>>,
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

#[derive(Debug, Clone, PartialEq)]
pub struct TapeEvent {
    pub pool: u32,
    /// Priority fee per gas (wei) its transaction paid; meaningful only when the tape
    /// [`has_priority_fees`](Tape::has_priority_fees). `u64::MAX` for transactions nobody can
    /// outbid (OP-stack deposits, blocks without a base fee).
    pub priority_fee: u64,
    pub update: Update,
}

/// A dataset as a replayable sequence of blocks.
#[derive(Debug, Clone)]
pub struct Tape {
    pub pools: Vec<PoolMeta>,
    /// Pool states before the first event (snapshots), `Unknown` where none.
    pub initial: Vec<PoolState>,
    /// Every block that has events or a header, ascending.
    pub blocks: Vec<BlockInfo>,
    /// `events[block_starts[i]..block_starts[i + 1]]` belong to `blocks[i]`.
    pub block_starts: Vec<u32>,
    pub events: Vec<TapeEvent>,
    pub chain_id: u64,
    /// SHA-256 of the dataset's content.
    pub dataset_hash: String,
    /// Whether every event carries its transaction's priority fee (the dataset has a
    /// `transactions` table); otherwise the backtester states its queue assumption.
    pub has_priority_fees: bool,
}

/// Where a log stands in the chain: (block, transaction index, log index).
type LogKey = (u64, u64, u64);

/// The fee a transaction paid for its place in the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxFee {
    pub block_number: u64,
    pub transaction_index: u64,
    /// Wei per gas above the base fee; `None` when unknown. `Some(u64::MAX)` for transactions we
    /// cannot outbid (OP-stack deposits, blocks without a base fee).
    pub priority_fee: Option<u64>,
}

/// The priority fees of the dataset's transactions, `None` when it has no `transactions` table
/// (imported logs carry no receipts).
fn read_fees(root: &Path) -> Result<Option<Vec<TxFee>>> {
    Ok(dataset::read_all_transactions(root)?.map(|rows| {
        rows.iter()
            .map(|t| TxFee {
                block_number: t.block_number,
                transaction_index: t.transaction_index,
                // No priority fee: an OP-stack deposit (ordered before every user transaction)
                // or a block without a base fee. Either way we cannot outbid it: it goes first.
                // Wei per gas above u64 (18.4 ETH per gas) is beyond any real bid as well.
                priority_fee: Some(
                    t.priority_fee_per_gas
                        .map_or(u64::MAX, |f| u64::try_from(f).unwrap_or(u64::MAX)),
                ),
            })
            .collect()
    }))
}

pub fn pool_meta(p: &PoolInfo) -> PoolMeta {
    PoolMeta {
        address: p.address,
        family: match p.protocol {
            Protocol::UniswapV2 => Family::V2,
            Protocol::UniswapV3 | Protocol::PancakeV3 => Family::V3,
            Protocol::Solidly => Family::Solidly,
        },
        dex: p.dex.clone(),
        token0: p.token0.address,
        token1: p.token1.address,
        symbol0: p.token0.symbol.clone(),
        symbol1: p.token1.symbol.clone(),
        decimals0: p.token0.decimals,
        decimals1: p.token1.decimals,
        fee: p.fee,
        tick_spacing: p.tick_spacing.unwrap_or(1),
        stable: p.stable.unwrap_or(false),
    }
}

impl Tape {
    /// Reads and decodes a dataset folder (as written by `dexlab data ingest|import`).
    pub fn load(root: &Path) -> Result<Tape> {
        let meta = dataset::read_meta(root)?;
        let logs = dataset::read_all_logs(root)?;
        let headers = dataset::read_all_blocks(root)?;
        let snaps = snapshot::load(root)?;
        let hash = dataset::content_hash(root)?;
        let txs = read_fees(root)?;
        let mut tape = Tape::build(&meta.pools, &logs, &headers, &snaps, txs.as_deref())?;
        tape.chain_id = meta.chain_id;
        tape.dataset_hash = hash;
        Ok(tape)
    }

    /// Imports `eth_getLogs` JSON lines (with a `block,timestamp` CSV and a chain manifest for the
    /// pools) into a dataset at `out`, then loads it: how tests, benchmarks and examples read the
    /// real sample.
    pub fn import_jsonl(
        logs: &Path,
        timestamps: &Path,
        manifest: &Path,
        chain_id: u64,
        out: &Path,
    ) -> Result<Tape> {
        let manifest = dexlab_data::manifest::ChainManifest::load(manifest)?;
        dexlab_data::import::import(&dexlab_data::import::ImportOptions {
            input: logs.to_path_buf(),
            out: out.to_path_buf(),
            timestamps: Some(timestamps.to_path_buf()),
            pools: manifest.pools,
            chain_id,
            chunk_blocks: 10_000,
        })?;
        Tape::load(out)
    }

    /// Builds a tape from decoded parts. Logs of unknown pools and events that do not change pool
    /// state are skipped; a log that does not decode is an error naming where it is.
    pub fn build(
        pools: &[PoolInfo],
        logs: &[dexlab_data::RawLog],
        headers: &[dexlab_data::BlockRow],
        snapshots: &[snapshot::PoolSnapshot],
        transactions: Option<&[TxFee]>,
    ) -> Result<Tape> {
        let metas: Vec<PoolMeta> = pools.iter().map(pool_meta).collect();
        let index: HashMap<Address, u32> = metas
            .iter()
            .enumerate()
            .map(|(i, m)| (m.address, i as u32))
            .collect();
        let mut initial = vec![PoolState::Unknown; metas.len()];
        if !snapshots.is_empty() {
            let mut rp = replay::Replayer::new(pools);
            for s in snapshots {
                s.seed(&mut rp)?;
            }
            for (addr, st) in &rp.states {
                if let Some(&i) = index.get(addr) {
                    initial[i as usize] = convert_state(&metas[i as usize], st);
                }
            }
        }
        let mut by_block: BTreeMap<u64, BlockInfo> = headers
            .iter()
            .map(|h| {
                (
                    h.number,
                    BlockInfo {
                        number: h.number,
                        timestamp: h.timestamp,
                        base_fee: h.base_fee_per_gas.map(u128::from),
                    },
                )
            })
            .collect();
        // A pair's `Swap` rides on its `Sync`: it is kept as `Err(flow)` until paired.
        type Decoded = (LogKey, u32, std::result::Result<Update, SwapIn>);
        let mut raw: Vec<Decoded> = Vec::with_capacity(logs.len());
        for log in logs {
            let Some(&pool) = index.get(&log.address) else {
                continue;
            };
            let (_, ev) = decode_log(log).map_err(|e| EvolveError::Decode {
                location: log.location().to_string(),
                message: e.to_string(),
            })?;
            let update = match ev {
                Event::Sync { reserve0, reserve1 } => Ok(Update::Reserves {
                    reserve0,
                    reserve1,
                    swap: None,
                }),
                Event::PairSwap {
                    amount0_in,
                    amount1_in,
                    ..
                } => match (amount0_in.is_zero(), amount1_in.is_zero()) {
                    (false, true) => Err(SwapIn {
                        zero_for_one: true,
                        amount_in: amount0_in,
                    }),
                    (true, false) => Err(SwapIn {
                        zero_for_one: false,
                        amount_in: amount1_in,
                    }),
                    // Both sides in (a flash swap) or neither: the reserve deltas say the rest.
                    _ => continue,
                },
                Event::V3Swap {
                    amount0,
                    amount1,
                    sqrt_price_x96,
                    liquidity,
                    tick,
                    ..
                } => Ok(Update::V3Swap {
                    sqrt_price_x96,
                    tick,
                    liquidity,
                    swap: if amount0.is_positive() {
                        Some(Box::new(SwapIn {
                            zero_for_one: true,
                            amount_in: amount0.into_raw(),
                        }))
                    } else if amount1.is_positive() {
                        Some(Box::new(SwapIn {
                            zero_for_one: false,
                            amount_in: amount1.into_raw(),
                        }))
                    } else {
                        None
                    },
                }),
                Event::V3Mint {
                    tick_lower,
                    tick_upper,
                    amount,
                    ..
                } => Ok(Update::V3Liquidity {
                    lower: tick_lower,
                    upper: tick_upper,
                    delta: amount as i128,
                }),
                Event::V3Burn {
                    tick_lower,
                    tick_upper,
                    amount,
                    ..
                } => Ok(Update::V3Liquidity {
                    lower: tick_lower,
                    upper: tick_upper,
                    delta: -(amount as i128),
                }),
                Event::V3Initialize {
                    sqrt_price_x96,
                    tick,
                } => Ok(Update::V3Initialize {
                    sqrt_price_x96,
                    tick,
                }),
                _ => continue,
            };
            by_block.entry(log.block_number).or_insert(BlockInfo {
                number: log.block_number,
                timestamp: 0,
                base_fee: None,
            });
            raw.push((
                (log.block_number, log.transaction_index, log.log_index),
                pool,
                update,
            ));
        }
        // Chain order, whatever order the files were in.
        raw.sort_by_key(|(k, _, _)| *k);
        let priority: HashMap<(u64, u64), u64> = transactions
            .unwrap_or_default()
            .iter()
            .filter_map(|t| Some(((t.block_number, t.transaction_index), t.priority_fee?)))
            .collect();
        let mut events: Vec<(u64, TapeEvent)> = Vec::with_capacity(raw.len());
        // Per pool: the position in `events` of its last `Sync`, and that log's transaction.
        let mut last_sync: HashMap<u32, (usize, u64, u64)> = HashMap::new();
        let mut all_priced = transactions.is_some();
        for ((block, tx, _), pool, update) in raw {
            let update = match update {
                Ok(u) => u,
                Err(flow) => {
                    // A V2/Solidly `Swap` comes right after the `Sync` of the same transaction.
                    if let Some(&(at, b, t)) = last_sync.get(&pool)
                        && (b, t) == (block, tx)
                        && let Update::Reserves { swap, .. } = &mut events[at].1.update
                        && swap.is_none()
                    {
                        *swap = Some(Box::new(flow));
                    }
                    continue;
                }
            };
            if matches!(update, Update::Reserves { .. }) {
                last_sync.insert(pool, (events.len(), block, tx));
            }
            let priority_fee = priority.get(&(block, tx)).copied();
            all_priced &= priority_fee.is_some();
            let priority_fee = priority_fee.unwrap_or(0);
            events.push((
                block,
                TapeEvent {
                    pool,
                    priority_fee,
                    update,
                },
            ));
        }
        let blocks: Vec<BlockInfo> = by_block.into_values().collect();
        let mut block_starts = Vec::with_capacity(blocks.len() + 1);
        let mut j = 0usize;
        for b in &blocks {
            block_starts.push(j as u32);
            while j < events.len() && events[j].0 == b.number {
                j += 1;
            }
        }
        block_starts.push(j as u32);
        Ok(Tape {
            pools: metas,
            initial,
            blocks,
            block_starts,
            events: events.into_iter().map(|(_, e)| e).collect(),
            chain_id: 0,
            dataset_hash: String::new(),
            has_priority_fees: all_priced,
        })
    }

    pub fn events_of(&self, block_idx: usize) -> &[TapeEvent] {
        &self.events
            [self.block_starts[block_idx] as usize..self.block_starts[block_idx + 1] as usize]
    }

    /// A market with the initial states.
    pub fn market(&self) -> Market {
        let mut m = Market::new(self.pools.clone());
        m.states.clone_from(&self.initial);
        m
    }

    /// The market after replaying blocks `..block_idx`.
    pub fn market_at(&self, block_idx: usize) -> Market {
        let mut m = self.market();
        for i in 0..block_idx.min(self.blocks.len()) {
            for e in self.events_of(i) {
                apply(&mut m, e);
            }
            m.block = self.blocks[i];
        }
        m
    }
}

/// Applies one update to the market. This is the whole of state replay: field copies, plus a tick
/// map update for V3 liquidity changes.
#[inline]
pub fn apply(market: &mut Market, e: &TapeEvent) {
    let i = e.pool as usize;
    apply_state(&market.pools[i], &mut market.states[i], &e.update);
}

/// Applies one update to one pool's state, as history has it.
#[inline]
pub fn apply_state(meta: &PoolMeta, state: &mut PoolState, update: &Update) {
    match (update, meta.family) {
        (
            Update::Reserves {
                reserve0, reserve1, ..
            },
            Family::Solidly,
        ) => match state {
            PoolState::Solidly(p) => {
                p.reserve0 = *reserve0;
                p.reserve1 = *reserve1;
            }
            _ => {
                *state = PoolState::Solidly(SolidlyPool::new(
                    *reserve0,
                    *reserve1,
                    meta.decimals0,
                    meta.decimals1,
                    meta.stable,
                    meta.fee,
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
                ..
            },
            _,
        ) => match state {
            PoolState::V3(p) => {
                p.sqrt_price_x96 = *sqrt_price_x96;
                p.tick = *tick;
                p.liquidity = *liquidity;
            }
            _ => {
                *state = PoolState::V3(V3Pool {
                    sqrt_price_x96: *sqrt_price_x96,
                    tick: *tick,
                    liquidity: *liquidity,
                    fee: meta.fee,
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
                let mut x = clip_input(zfo, (r0, r1), (h0, h1), meta.fee)
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
/// form without cancellation).
fn clip_input(
    zero_for_one: bool,
    (r0, r1): (U256, U256),
    (h0, h1): (U256, U256),
    fee_pips: u32,
) -> Option<U256> {
    let f = dexlab_strategy::market::u256_to_f64;
    let (a, b, t) = if zero_for_one {
        (f(r0), f(r1), f(h0) / f(h1))
    } else {
        (f(r1), f(r0), f(h1) / f(h0))
    };
    let g = 1.0 - f64::from(fee_pips) / 1e6;
    let excess = a * b * t - a * a;
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

fn convert_state(meta: &PoolMeta, st: &replay::PoolState) -> PoolState {
    match st {
        replay::PoolState::Unknown => PoolState::Unknown,
        replay::PoolState::Reserves { reserve0, reserve1 } if meta.family == Family::Solidly => {
            PoolState::Solidly(SolidlyPool::new(
                *reserve0,
                *reserve1,
                meta.decimals0,
                meta.decimals1,
                meta.stable,
                meta.fee,
            ))
        }
        replay::PoolState::Reserves { reserve0, reserve1 } => PoolState::V2 {
            reserve0: *reserve0,
            reserve1: *reserve1,
        },
        replay::PoolState::V3 { pool, .. } => PoolState::V3(pool.clone()),
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::{Address, U256};
    use dexlab_amm::v2::get_amount_out;
    use dexlab_strategy::market::{Family, PoolMeta, PoolState};

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
