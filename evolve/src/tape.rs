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

use alloy_primitives::{Address, U256};
use dexlab_amm::solidly::SolidlyPool;
use dexlab_amm::v3::V3Pool;
use dexlab_data::decode::{Event, decode_log};
use dexlab_data::types::{PoolInfo, Protocol};
use dexlab_data::{dataset, replay, snapshot};
use dexlab_strategy::market::{BlockInfo, Family, Market, PoolMeta, PoolState};

use crate::error::{EvolveError, Result};

/// One pool-state update.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// V2/Solidly reserves after the event.
    Reserves {
        reserve0: U256,
        reserve1: U256,
    },
    /// V3 state after a swap.
    V3Swap {
        sqrt_price_x96: U256,
        tick: i32,
        liquidity: u128,
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
        let mut tape = Tape::build(&meta.pools, &logs, &headers, &snaps)?;
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
        let mut events: Vec<(u64, TapeEvent)> = Vec::with_capacity(logs.len());
        for log in logs {
            let Some(&pool) = index.get(&log.address) else {
                continue;
            };
            let (_, ev) = decode_log(log).map_err(|e| EvolveError::Decode {
                location: log.location().to_string(),
                message: e.to_string(),
            })?;
            let update = match ev {
                Event::Sync { reserve0, reserve1 } => Update::Reserves { reserve0, reserve1 },
                Event::V3Swap {
                    sqrt_price_x96,
                    liquidity,
                    tick,
                    ..
                } => Update::V3Swap {
                    sqrt_price_x96,
                    tick,
                    liquidity,
                },
                Event::V3Mint {
                    tick_lower,
                    tick_upper,
                    amount,
                    ..
                } => Update::V3Liquidity {
                    lower: tick_lower,
                    upper: tick_upper,
                    delta: amount as i128,
                },
                Event::V3Burn {
                    tick_lower,
                    tick_upper,
                    amount,
                    ..
                } => Update::V3Liquidity {
                    lower: tick_lower,
                    upper: tick_upper,
                    delta: -(amount as i128),
                },
                Event::V3Initialize {
                    sqrt_price_x96,
                    tick,
                } => Update::V3Initialize {
                    sqrt_price_x96,
                    tick,
                },
                _ => continue,
            };
            by_block.entry(log.block_number).or_insert(BlockInfo {
                number: log.block_number,
                timestamp: 0,
                base_fee: None,
            });
            events.push((log.block_number, TapeEvent { pool, update }));
        }
        // Logs arrive in chain order; a stable sort keeps in-block order if files were not.
        events.sort_by_key(|(b, _)| *b);
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
    let meta = &market.pools[i];
    let state = &mut market.states[i];
    match (&e.update, meta.family) {
        (Update::Reserves { reserve0, reserve1 }, Family::Solidly) => match state {
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
        (Update::Reserves { reserve0, reserve1 }, _) => {
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
