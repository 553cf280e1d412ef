//! Derived tables: `swaps` and `liquidity_events` from decoded logs.
//!
//! V2 and Solidly swaps take their post-swap reserves from the `Sync` the pair emits just before
//! `Swap` in the same transaction. Logs must arrive in (block, log index) order; chunks are cut at
//! block boundaries, so a Sync and its Swap never fall in different chunks.

use std::collections::{BTreeMap, HashMap};

use alloy::primitives::{Address, B256, I256, U256};

use crate::dataset::{EventKey, LiquidityEventRow, SwapRow};
use crate::decode::{DecodeError, Event, EventKind, decode_log, kind_fits_protocol};
use crate::types::{PoolInfo, RawLog};

/// Counts of what a run decoded, by event kind name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DecodeStats {
    pub logs: u64,
    pub by_kind: BTreeMap<String, u64>,
    /// Logs that gave no row: a topic0 that is no DEX event, or a pool without metadata.
    pub unknown: u64,
    /// Of `unknown`, the logs of pools without metadata (kept in `logs` only).
    #[serde(default)]
    pub unknown_pool: u64,
    pub malformed: u64,
}

impl DecodeStats {
    pub fn merge(&mut self, other: &DecodeStats) {
        self.logs += other.logs;
        self.unknown += other.unknown;
        self.unknown_pool += other.unknown_pool;
        self.malformed += other.malformed;
        for (k, v) in &other.by_kind {
            *self.by_kind.entry(k.clone()).or_default() += v;
        }
    }
}

/// V2 and Solidly pairs emit `Sync` (their reserves after any change) just before the `Swap`,
/// `Mint` or `Burn` of the same transaction; this remembers it for the event that follows.
#[derive(Debug, Default)]
pub struct SyncTracker(HashMap<Address, (B256, U256, U256)>);

impl SyncTracker {
    pub fn record(&mut self, log: &RawLog, reserve0: U256, reserve1: U256) {
        self.0
            .insert(log.address, (log.transaction_hash, reserve0, reserve1));
    }

    /// The reserves the pair reported earlier in the same transaction as `log`.
    pub fn reserves_for(&self, log: &RawLog) -> Option<(U256, U256)> {
        self.0
            .get(&log.address)
            .filter(|(tx, _, _)| *tx == log.transaction_hash)
            .map(|&(_, r0, r1)| (r0, r1))
    }

    /// [`Self::reserves_for`], forgotten once read: for a record that belongs to one event only.
    pub fn take_for(&mut self, log: &RawLog) -> Option<(U256, U256)> {
        let found = self.reserves_for(log);
        if found.is_some() {
            self.0.remove(&log.address);
        }
        found
    }
}

/// The derived rows of one chunk of logs.
#[derive(Debug, Default)]
pub struct Derived {
    pub swaps: Vec<SwapRow>,
    pub liquidity_events: Vec<LiquidityEventRow>,
    pub stats: DecodeStats,
    /// Malformed logs, skipped. Each says where it is.
    pub malformed: Vec<DecodeError>,
}

fn pow10(d: i32) -> f64 {
    10f64.powi(d)
}

fn i256_f64(v: I256) -> f64 {
    let (sign, abs) = v.into_sign_and_abs();
    let f = f64::from(abs);
    if sign.is_negative() { -f } else { f }
}

/// Token1 per token0 in human units from a Q64.96 sqrt price.
pub fn price_from_sqrt_x96(sqrt_price_x96: U256, dec0: u8, dec1: u8) -> f64 {
    let s = f64::from(sqrt_price_x96) / 2f64.powi(96);
    s * s * pow10(dec0 as i32 - dec1 as i32)
}

/// Token1 per token0 in human units from reserves; `None` when either side is empty (no price).
pub fn price_from_reserves(r0: U256, r1: U256, dec0: u8, dec1: u8) -> Option<f64> {
    if r0.is_zero() || r1.is_zero() {
        return None;
    }
    Some(f64::from(r1) / f64::from(r0) * pow10(dec0 as i32 - dec1 as i32))
}

/// The pool's net delta `into - out`, exactly; `None` when it does not fit an int256 (amounts
/// no real pair emits: stored wrapped, they would flip sign).
fn signed(into: U256, out: U256) -> Option<I256> {
    if into >= out {
        I256::try_from(into - out).ok()
    } else {
        let d = out - into;
        if d == I256::MIN.unsigned_abs() {
            Some(I256::MIN)
        } else {
            I256::try_from(d).ok().map(|v| -v)
        }
    }
}

/// Decodes `logs` (in chain order) into swap and liquidity rows.
///
/// Only logs of the pools in `pools` become rows: without a pool's protocol, tokens and decimals
/// a swap would be a row with a guessed protocol and no price. Other logs are counted as unknown
/// (`stats.unknown_pool`) and stay in the `logs` table, where a later import with the pool's
/// metadata can decode them.
pub fn derive(
    logs: &[RawLog],
    pools: &HashMap<Address, PoolInfo>,
    timestamps: &dyn Fn(u64) -> Option<u64>,
) -> Derived {
    let mut out = Derived::default();
    // Last Sync per pool: (tx hash, reserves).
    let mut syncs = SyncTracker::default();
    for log in logs {
        out.stats.logs += 1;
        let Some(info) = pools.get(&log.address) else {
            out.stats.unknown += 1;
            out.stats.unknown_pool += 1;
            continue;
        };
        let (kind, ev) = match decode_log(log) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(%e, "skipping malformed log");
                out.stats.malformed += 1;
                out.malformed.push(e);
                continue;
            }
        };
        if kind == EventKind::Unknown {
            out.stats.unknown += 1;
            continue;
        }
        if !kind_fits_protocol(kind, info.protocol) {
            let e = DecodeError {
                kind: kind.name(),
                location: log.location(),
                message: format!(
                    "pool {:#x} is {} in the metadata and cannot emit this event",
                    log.address, info.protocol
                ),
            };
            tracing::warn!(%e, "skipping malformed log");
            out.stats.malformed += 1;
            out.malformed.push(e);
            continue;
        }
        *out.stats.by_kind.entry(kind.name().to_owned()).or_default() += 1;
        let protocol = info.protocol;
        let (dec0, dec1) = (Some(info.token0.decimals), Some(info.token1.decimals));
        let key = EventKey {
            chain_id: log.chain_id,
            block_number: log.block_number,
            block_timestamp: timestamps(log.block_number),
            transaction_hash: log.transaction_hash,
            transaction_index: log.transaction_index,
            log_index: log.log_index,
            pool: log.address,
            protocol: protocol.as_str().to_owned(),
        };
        match ev {
            Event::Sync { reserve0, reserve1 } => {
                syncs.record(log, reserve0, reserve1);
            }
            Event::PairSwap {
                amount0_in,
                amount1_in,
                amount0_out,
                amount1_out,
            } => {
                let (Some(a0), Some(a1)) = (
                    signed(amount0_in, amount0_out),
                    signed(amount1_in, amount1_out),
                ) else {
                    let e = DecodeError {
                        kind: kind.name(),
                        location: log.location(),
                        message: "the net amount in minus out does not fit an int256".into(),
                    };
                    tracing::warn!(%e, "skipping malformed log");
                    out.stats.malformed += 1;
                    out.malformed.push(e);
                    continue;
                };
                let reserves = syncs.reserves_for(log);
                let price = match (reserves, dec0, dec1) {
                    (Some((r0, r1)), Some(d0), Some(d1)) => price_from_reserves(r0, r1, d0, d1),
                    _ => None,
                };
                out.swaps.push(SwapRow {
                    key: key.clone(),
                    amount0: a0.to_string(),
                    amount1: a1.to_string(),
                    sqrt_price_x96: None,
                    liquidity: None,
                    tick: None,
                    reserve0: reserves.map(|r| r.0.to_string()),
                    reserve1: reserves.map(|r| r.1.to_string()),
                    protocol_fee0: None,
                    protocol_fee1: None,
                    amount0_float: dec0.map(|d| i256_f64(a0) / pow10(d.into())),
                    amount1_float: dec1.map(|d| i256_f64(a1) / pow10(d.into())),
                    price_float: price,
                });
            }
            Event::V3Swap {
                amount0,
                amount1,
                sqrt_price_x96,
                liquidity,
                tick,
                protocol_fees,
            } => {
                out.swaps.push(SwapRow {
                    key: key.clone(),
                    amount0: amount0.to_string(),
                    amount1: amount1.to_string(),
                    sqrt_price_x96: Some(sqrt_price_x96.to_string()),
                    liquidity: Some(liquidity.to_string()),
                    tick: Some(tick),
                    reserve0: None,
                    reserve1: None,
                    protocol_fee0: protocol_fees.map(|f| f.0.to_string()),
                    protocol_fee1: protocol_fees.map(|f| f.1.to_string()),
                    amount0_float: dec0.map(|d| i256_f64(amount0) / pow10(d.into())),
                    amount1_float: dec1.map(|d| i256_f64(amount1) / pow10(d.into())),
                    price_float: dec0
                        .zip(dec1)
                        .map(|(d0, d1)| price_from_sqrt_x96(sqrt_price_x96, d0, d1)),
                });
            }
            other => {
                let row = |kind: &'static str| LiquidityEventRow {
                    key: key.clone(),
                    kind,
                    owner: None,
                    tick_lower: None,
                    tick_upper: None,
                    liquidity: None,
                    amount0: None,
                    amount1: None,
                    sqrt_price_x96: None,
                    tick: None,
                };
                let r = match other {
                    Event::PairMint { amount0, amount1 } => LiquidityEventRow {
                        amount0: Some(amount0.to_string()),
                        amount1: Some(amount1.to_string()),
                        ..row("mint")
                    },
                    Event::PairBurn { amount0, amount1 } => LiquidityEventRow {
                        amount0: Some(amount0.to_string()),
                        amount1: Some(amount1.to_string()),
                        ..row("burn")
                    },
                    Event::PairFees { amount0, amount1 } => LiquidityEventRow {
                        amount0: Some(amount0.to_string()),
                        amount1: Some(amount1.to_string()),
                        ..row("fees")
                    },
                    Event::V3Mint {
                        owner,
                        tick_lower,
                        tick_upper,
                        amount,
                        amount0,
                        amount1,
                    } => LiquidityEventRow {
                        owner: Some(owner),
                        tick_lower: Some(tick_lower),
                        tick_upper: Some(tick_upper),
                        liquidity: Some(amount.to_string()),
                        amount0: Some(amount0.to_string()),
                        amount1: Some(amount1.to_string()),
                        ..row("mint")
                    },
                    Event::V3Burn {
                        owner,
                        tick_lower,
                        tick_upper,
                        amount,
                        amount0,
                        amount1,
                    } => LiquidityEventRow {
                        owner: Some(owner),
                        tick_lower: Some(tick_lower),
                        tick_upper: Some(tick_upper),
                        liquidity: Some(amount.to_string()),
                        amount0: Some(amount0.to_string()),
                        amount1: Some(amount1.to_string()),
                        ..row("burn")
                    },
                    Event::V3Collect {
                        owner,
                        tick_lower,
                        tick_upper,
                        amount0,
                        amount1,
                    } => LiquidityEventRow {
                        owner: Some(owner),
                        tick_lower: Some(tick_lower),
                        tick_upper: Some(tick_upper),
                        amount0: Some(amount0.to_string()),
                        amount1: Some(amount1.to_string()),
                        ..row("collect")
                    },
                    Event::V3Initialize {
                        sqrt_price_x96,
                        tick,
                    } => LiquidityEventRow {
                        sqrt_price_x96: Some(sqrt_price_x96.to_string()),
                        tick: Some(tick),
                        ..row("initialize")
                    },
                    Event::Sync { .. }
                    | Event::PairSwap { .. }
                    | Event::V3Swap { .. }
                    | Event::Unknown => continue,
                };
                out.liquidity_events.push(r);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_from_sqrt_matches_the_usdc_weth_sample() {
        // First swap of the real sample: 1 WETH ~ 2 270 USDC.
        let sqrt: U256 = "1662995104975155420368771254341874".parse().unwrap();
        let p = price_from_sqrt_x96(sqrt, 6, 18);
        let usdc_per_weth = 1.0 / p;
        assert!((2200.0..2300.0).contains(&usdc_per_weth), "{usdc_per_weth}");
    }

    #[test]
    fn signed_amounts_are_exact_at_the_extremes() {
        let max = U256::from(u128::MAX) << 100;
        assert_eq!(
            signed(max, U256::ZERO).unwrap().to_string(),
            max.to_string()
        );
        assert_eq!(
            signed(U256::ZERO, max).unwrap().to_string(),
            format!("-{max}")
        );
        let half = U256::from(1) << 255;
        assert_eq!(signed(U256::ZERO, half), Some(I256::MIN));
        assert_eq!(signed(half, U256::ZERO), None);
        assert_eq!(signed(U256::MAX, U256::from(1)), None);
        assert_eq!(
            signed(U256::MAX, U256::MAX - U256::from(5)).unwrap(),
            I256::try_from(5).unwrap()
        );
    }
}

/// What writing one chunk produced.
#[derive(Debug, Default, Clone)]
pub struct ChunkSummary {
    pub logs: usize,
    pub blocks: usize,
    pub swaps: usize,
    pub liquidity_events: usize,
    /// Rows written to `transactions` (0 when the chunk has no such table).
    pub transactions: usize,
    pub stats: DecodeStats,
    pub malformed: Vec<DecodeError>,
}

/// Writes every table of one block-range chunk `[first, last]` of a dataset. `txs` is `None` for
/// sources without receipts (imported logs): then no `transactions` file is written.
pub fn write_chunk(
    root: &std::path::Path,
    first: u64,
    last: u64,
    logs: &[RawLog],
    blocks: &[crate::types::BlockRow],
    txs: Option<&[crate::types::TxRow]>,
    pools: &HashMap<Address, PoolInfo>,
) -> crate::Result<ChunkSummary> {
    use crate::dataset::*;
    let ts: HashMap<u64, u64> = blocks.iter().map(|b| (b.number, b.timestamp)).collect();
    let d = derive(logs, pools, &|n| ts.get(&n).copied());
    write_parquet(&chunk_path(root, LOGS, first, last), &logs_batch(logs)?)?;
    write_parquet(
        &chunk_path(root, BLOCKS, first, last),
        &blocks_batch(blocks)?,
    )?;
    write_parquet(
        &chunk_path(root, SWAPS, first, last),
        &swaps_batch(&d.swaps)?,
    )?;
    write_parquet(
        &chunk_path(root, LIQUIDITY_EVENTS, first, last),
        &liquidity_events_batch(&d.liquidity_events)?,
    )?;
    if let Some(txs) = txs {
        write_parquet(
            &chunk_path(root, TRANSACTIONS, first, last),
            &transactions_batch(txs)?,
        )?;
    }
    Ok(ChunkSummary {
        logs: logs.len(),
        blocks: blocks.len(),
        swaps: d.swaps.len(),
        liquidity_events: d.liquidity_events.len(),
        transactions: txs.map_or(0, <[_]>::len),
        stats: d.stats,
        malformed: d.malformed,
    })
}
