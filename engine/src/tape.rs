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

use alloy_primitives::Address;
pub use dexlab_data::events::pool_meta;
use dexlab_data::types::PoolInfo;
use dexlab_data::{dataset, events, replay, snapshot};
use dexlab_market::fees::FeeWatch;
pub use dexlab_market::update::{PoolEvent, SwapIn, Update, apply, apply_state, replay_flow};
use dexlab_market::{BlockInfo, Market, PoolMeta, PoolState};

use dexlab_data::Result;

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
    pub events: Vec<PoolEvent>,
    pub chain_id: u64,
    /// SHA-256 of the dataset's content.
    pub dataset_hash: String,
    /// Whether every event carries its transaction's priority fee (the dataset has a
    /// `transactions` table); otherwise the backtester states its queue assumption.
    pub has_priority_fees: bool,
}

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
        let (metas, initial) = initial_market(pools, snapshots)?;
        let index = pool_index(&metas);
        let mut by_block: BTreeMap<u64, BlockInfo> = headers
            .iter()
            .map(|h| {
                (
                    h.number,
                    BlockInfo {
                        number: h.number,
                        timestamp: h.timestamp,
                        base_fee: h.base_fee_per_gas.map(u128::from),
                        ..BlockInfo::default()
                    },
                )
            })
            .collect();
        let located = events::decode_tracked(logs, &index)?;
        for l in &located {
            let number = l.key.0;
            by_block.entry(number).or_insert(BlockInfo {
                number,
                ..BlockInfo::default()
            });
        }
        let priority: HashMap<(u64, u64), u64> = transactions
            .unwrap_or_default()
            .iter()
            .filter_map(|t| Some(((t.block_number, t.transaction_index), t.priority_fee?)))
            .collect();
        let (mut events, all_priced) =
            events::sequence(located, |block, tx| priority.get(&(block, tx)).copied());
        // Slipstream's fee can change with no event: each swap says which fee it paid.
        let mut watch = FeeWatch::new(&metas, &initial, |i| watches_fee(&pools[i]));
        if watch.is_watching() {
            watch.mark(events.iter_mut().map(|(_, e)| e));
        }
        let all_priced = all_priced && transactions.is_some();
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

    pub fn events_of(&self, block_idx: usize) -> &[PoolEvent] {
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

/// Whether a pool's fee can change without an event of the pool, so that [`FeeWatch`] must
/// recover it from its swaps: Slipstream's, which its factory's swap-fee module decides.
pub fn watches_fee(pool: &PoolInfo) -> bool {
    pool.protocol == dexlab_data::Protocol::Slipstream
}

/// Each pool's index in the market, by address.
pub fn pool_index(metas: &[PoolMeta]) -> HashMap<Address, u32> {
    metas
        .iter()
        .enumerate()
        .map(|(i, m)| (m.address, i as u32))
        .collect()
}

/// The market's pools and their states from snapshots (`Unknown` where none): where a tape, a
/// session and the live engine all start.
pub fn initial_market(
    pools: &[PoolInfo],
    snapshots: &[snapshot::PoolSnapshot],
) -> Result<(Vec<PoolMeta>, Vec<PoolState>)> {
    let metas: Vec<PoolMeta> = pools.iter().map(pool_meta).collect();
    let index = pool_index(&metas);
    let mut initial = vec![PoolState::Unknown; metas.len()];
    if !snapshots.is_empty() {
        let mut rp = replay::Replayer::new(pools);
        for s in snapshots {
            s.seed(&mut rp)?;
        }
        for (addr, st) in &rp.states {
            if let Some(&i) = index.get(addr) {
                initial[i as usize] = events::market_state(&metas[i as usize], st);
            }
        }
    }
    Ok((metas, initial))
}
