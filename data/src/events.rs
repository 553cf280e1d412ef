//! Raw logs of tracked pools → [`PoolEvent`]s of the shared market (`dexlab-market`): the one
//! place that turns decoded events into pool-state updates, used by the backtester's tape (a
//! whole dataset at once) and by the live engine (block by block).
//!
//! A V2/Solidly `Swap` rides on the `Sync` its pair emitted just before it in the same
//! transaction (the `Sync` carries the state, the `Swap` the flow); V3 `Swap`s carry both. An
//! Aerodrome swap's `Fees` event (emitted before its `Sync`) says what fee the swap paid, which
//! the flow carries ([`SwapIn::fee`]): Aerodrome's fee manager can change a pool's fee at any
//! block. Events that do not change pool state (approvals, collects) are skipped.

use std::collections::HashMap;

use alloy::primitives::{Address, U256};
use dexlab_market::fees::solidly_fee_paid;
use dexlab_market::{Family, PaidFee, PoolEvent, PoolMeta, PoolState, SwapIn, Update};

use crate::decode::{Event, decode_log};
use crate::error::{DataError, Result};
use crate::replay;
use crate::types::{PoolInfo, Protocol, RawLog};

/// Where a log stands in the chain: (block, transaction index, log index).
pub type LogKey = (u64, u64, u64);

/// The market's static facts of a pool.
pub fn pool_meta(p: &PoolInfo) -> PoolMeta {
    PoolMeta {
        address: p.address,
        family: match p.protocol {
            Protocol::UniswapV2 => Family::V2,
            Protocol::UniswapV3 | Protocol::PancakeV3 | Protocol::Slipstream => Family::V3,
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

/// A verification replay state (a snapshot seeded into [`replay::Replayer`]) as market state.
pub fn market_state(meta: &PoolMeta, st: &replay::PoolState) -> PoolState {
    match st {
        replay::PoolState::Unknown => PoolState::Unknown,
        replay::PoolState::Reserves { reserve0, reserve1 } if meta.family == Family::Solidly => {
            PoolState::Solidly(dexlab_amm::solidly::SolidlyPool::new(
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

/// What one decoded event means for its pool: a state update, or (a V2/Solidly `Swap`) the flow
/// that goes with the `Sync` before it.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Update(Update),
    Flow(SwapIn),
    /// A Solidly pool's `Fees`: what the inputs of the swap that follows paid in fees.
    Paid {
        amount0: U256,
        amount1: U256,
    },
}

/// The step of a decoded event; `None` for events that do not change pool state.
pub fn step_of(ev: Event) -> Option<Step> {
    Some(match ev {
        Event::Sync { reserve0, reserve1 } => Step::Update(Update::Reserves {
            reserve0,
            reserve1,
            swap: None,
            fee: PaidFee::UNKNOWN,
        }),
        Event::PairSwap {
            amount0_in,
            amount1_in,
            ..
        } => match (amount0_in.is_zero(), amount1_in.is_zero()) {
            (false, true) => Step::Flow(SwapIn {
                zero_for_one: true,
                amount_in: amount0_in,
            }),
            (true, false) => Step::Flow(SwapIn {
                zero_for_one: false,
                amount_in: amount1_in,
            }),
            // Both sides in (a flash swap) or neither: the reserve deltas say the rest.
            _ => return None,
        },
        Event::V3Swap {
            amount0,
            amount1,
            sqrt_price_x96,
            liquidity,
            tick,
            ..
        } => Step::Update(Update::V3Swap {
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
            fee: PaidFee::UNKNOWN,
        }),
        Event::V3Mint {
            tick_lower,
            tick_upper,
            amount,
            ..
        } => Step::Update(Update::V3Liquidity {
            lower: tick_lower,
            upper: tick_upper,
            delta: amount as i128,
        }),
        Event::V3Burn {
            tick_lower,
            tick_upper,
            amount,
            ..
        } => Step::Update(Update::V3Liquidity {
            lower: tick_lower,
            upper: tick_upper,
            delta: -(amount as i128),
        }),
        Event::V3Initialize {
            sqrt_price_x96,
            tick,
        } => Step::Update(Update::V3Initialize {
            sqrt_price_x96,
            tick,
        }),
        Event::PairFees { amount0, amount1 } => Step::Paid { amount0, amount1 },
        _ => return None,
    })
}

/// One tracked pool's decoded log, where it stands in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub key: LogKey,
    /// The pool's index in the market.
    pub pool: u32,
    pub step: Step,
}

/// Decodes the logs of the pools in `index` (address → pool index); logs of other addresses are
/// skipped, and so are events that do not change pool state. A log that does not decode is an
/// error naming where it is.
pub fn decode_tracked(logs: &[RawLog], index: &HashMap<Address, u32>) -> Result<Vec<Located>> {
    let mut out = Vec::with_capacity(logs.len());
    for log in logs {
        let Some(&pool) = index.get(&log.address) else {
            continue;
        };
        let (_, ev) = decode_log(log).map_err(|e| DataError::MalformedLog {
            location: log.location(),
            message: e.to_string(),
        })?;
        if let Some(step) = step_of(ev) {
            out.push(Located {
                key: (log.block_number, log.transaction_index, log.log_index),
                pool,
                step,
            });
        }
    }
    Ok(out)
}

/// The pool events of one block's logs (any order), for a source that does not know what each
/// transaction paid for its place (a node feed without receipts): every fee is unknown.
pub fn block_events(logs: &[RawLog], index: &HashMap<Address, u32>) -> Result<Vec<PoolEvent>> {
    let located = decode_tracked(logs, index)?;
    Ok(sequence(located, |_, _| None)
        .0
        .into_iter()
        .map(|(_, e)| e)
        .collect())
}

/// Puts decoded logs in chain order and pairs each V2/Solidly `Swap` with its `Sync`, giving each
/// event its transaction's priority fee from `priority` (`None`: unknown, recorded as 0). Returns
/// the events with their block numbers, and whether every event's fee was known. Pairing only
/// looks within a transaction, so a dataset sequenced whole and block by block give the same
/// events.
pub fn sequence(
    mut raw: Vec<Located>,
    priority: impl Fn(u64, u64) -> Option<u64>,
) -> (Vec<(u64, PoolEvent)>, bool) {
    raw.sort_by_key(|l| l.key);
    let mut events: Vec<(u64, PoolEvent)> = Vec::with_capacity(raw.len());
    // Per pool: the position in `events` of its last `Sync`, and that log's transaction.
    let mut last_sync: HashMap<u32, (usize, u64, u64)> = HashMap::new();
    // Per Solidly pool: its last `Fees` (transaction and amounts).
    let mut last_paid: HashMap<u32, (u64, u64, U256, U256)> = HashMap::new();
    let mut all_priced = true;
    for Located {
        key: (block, tx, _),
        pool,
        step,
    } in raw
    {
        let update = match step {
            Step::Update(u) => u,
            Step::Flow(flow) => {
                // A V2/Solidly `Swap` comes right after the `Sync` of the same transaction, and
                // an Aerodrome swap's `Fees` before both.
                if let Some(&(at, b, t)) = last_sync.get(&pool)
                    && (b, t) == (block, tx)
                    && let Update::Reserves { swap, fee, .. } = &mut events[at].1.update
                    && swap.is_none()
                {
                    if let Some(&(b, t, a0, a1)) = last_paid.get(&pool)
                        && (b, t) == (block, tx)
                    {
                        // From this swap alone (a swap too small to tell keeps the fee in force), so
                        // a dataset sequenced whole and block by block agree.
                        let paid = if flow.zero_for_one { a0 } else { a1 };
                        *fee = PaidFee::new(solidly_fee_paid(flow.amount_in, paid, None));
                    }
                    *swap = Some(Box::new(flow));
                }
                continue;
            }
            Step::Paid { amount0, amount1 } => {
                last_paid.insert(pool, (block, tx, amount0, amount1));
                continue;
            }
        };
        if matches!(update, Update::Reserves { .. }) {
            last_sync.insert(pool, (events.len(), block, tx));
        }
        let fee = priority(block, tx);
        all_priced &= fee.is_some();
        events.push((
            block,
            PoolEvent {
                pool,
                priority_fee: fee.unwrap_or(0),
                update,
            },
        ));
    }
    (events, all_priced)
}
