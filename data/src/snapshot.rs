//! Pool snapshots from an RPC node at one block, so that a replay of data that starts after a
//! pool's creation is exact from its first event: for V3 pools slot0, active liquidity and every
//! initialized tick (gross and net, from the tick bitmap); for V2 and Solidly pools the reserves.
//! Saved as `snapshots.json` in the dataset.

use std::collections::BTreeMap;
use std::path::Path;

use alloy::eips::BlockId;
use alloy::primitives::{Address, U256, aliases::I24};
use alloy::providers::DynProvider;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::types::PoolInfo;

alloy::sol! {
    // Only the leading words every V3-style pool shares: Uniswap V3's slot0 has 7 fields,
    // PancakeSwap's a wider fee word and Slipstream's 6 (no fee protocol); Slipstream's ticks()
    // puts stakedLiquidityNet third, so `initialized` sits elsewhere in each (the tick bitmap
    // says which ticks are initialized). The decoder ignores the words after these.
    #[sol(rpc)]
    interface IV3PoolState {
        function slot0() external view returns (uint160 sqrtPriceX96, int24 tick);
        function liquidity() external view returns (uint128);
        function tickBitmap(int16 wordPosition) external view returns (uint256);
        function ticks(int24 tick) external view returns (uint128 liquidityGross, int128 liquidityNet);
    }

    // contracts/DexlabTickLens.sol: every initialized tick of a pool in one call.
    interface IDexlabTickLens {
        function ticks(address pool, int24 spacing)
            external view returns (int24[] tick, uint128[] gross, int128[] net);
    }

    // V2's reserves are uint112 and Solidly's uint256: both fit the same ABI words.
    #[sol(rpc)]
    interface IPairReserves {
        function getReserves() external view returns (uint256 reserve0, uint256 reserve1, uint256 blockTimestampLast);
    }
}

/// Reserves of a V2 or Solidly pool at the end of `block`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservesSnapshot {
    pub pool: Address,
    pub block: u64,
    pub reserve0: String,
    pub reserve1: String,
}

/// One pool's state at the block before a dataset starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PoolSnapshot {
    V3(V3Snapshot),
    Reserves(ReservesSnapshot),
}

impl PoolSnapshot {
    /// Seeds a replayer with this snapshot.
    pub fn seed(&self, rp: &mut crate::replay::Replayer) -> Result<()> {
        match self {
            PoolSnapshot::V3(s) => s.seed(rp),
            PoolSnapshot::Reserves(s) => {
                let bad = |what: &str| DataError::Dataset {
                    path: "snapshots.json".into(),
                    message: format!("pool {}: bad {what}", s.pool),
                };
                let reserve0: U256 = s.reserve0.parse().map_err(|_| bad("reserve0"))?;
                let reserve1: U256 = s.reserve1.parse().map_err(|_| bad("reserve1"))?;
                if rp.infos.contains_key(&s.pool) {
                    rp.states.insert(
                        s.pool,
                        crate::replay::PoolState::Reserves { reserve0, reserve1 },
                    );
                }
                Ok(())
            }
        }
    }
}

/// How a pool that does not answer its first state call is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Absent {
    /// Any failure of the first call means "not created yet" (the dataset ingest's rule).
    AnyFailure,
    /// Only a call the node answered without a result (no code at the address, a revert, an
    /// undecodable answer); a failed request is an error.
    NoAnswer,
}

/// `Ok(None)` when `e` says the pool is absent under `rule`, the error otherwise.
fn absent<T>(
    e: alloy::contract::Error,
    rule: Absent,
    pool: Address,
    what: &str,
) -> Result<Option<T>> {
    use alloy::contract::Error as E;
    let no_answer = match &e {
        E::ZeroData(..) | E::AbiError(_) => true,
        E::TransportError(t) => t.as_error_resp().is_some_and(|p| {
            p.as_revert_data().is_some() || p.message.to_lowercase().contains("revert")
        }),
        _ => false,
    };
    if no_answer || rule == Absent::AnyFailure {
        Ok(None)
    } else {
        Err(rpc(pool, what, e))
    }
}

/// Reads a V2/Solidly pool's reserves at `block`. `None` if the pool did not exist yet (or did
/// not answer).
pub async fn snapshot_reserves(
    provider: &DynProvider,
    info: &PoolInfo,
    block: u64,
) -> Result<Option<ReservesSnapshot>> {
    reserves_at(
        provider,
        info,
        block,
        BlockId::number(block),
        Absent::AnyFailure,
    )
    .await
}

async fn reserves_at(
    provider: &DynProvider,
    info: &PoolInfo,
    block: u64,
    at: BlockId,
    rule: Absent,
) -> Result<Option<ReservesSnapshot>> {
    let c = IPairReserves::new(info.address, provider);
    let r = match c.getReserves().block(at).call().await {
        Ok(r) => r,
        Err(e) => return absent(e, rule, info.address, "getReserves()"),
    };
    Ok(Some(ReservesSnapshot {
        pool: info.address,
        block,
        reserve0: r.reserve0.to_string(),
        reserve1: r.reserve1.to_string(),
    }))
}

/// Snapshots every pool at `block`. A pool that does not answer is taken as not created yet.
pub async fn snapshot_pools(
    provider: &DynProvider,
    pools: &[PoolInfo],
    block: u64,
) -> Result<Vec<PoolSnapshot>> {
    pools_at(
        provider,
        pools,
        block,
        BlockId::number(block),
        Absent::AnyFailure,
    )
    .await
}

/// Snapshots every pool at the block `at` (by hash, to pin one branch, or by number), whose
/// number is `block`. Strict, for a live engine: a pool is left out only when the node answers
/// that it has no such state (no code yet, a revert, an uninitialized V3 pool); a failed request
/// is an error, never a missing pool.
pub async fn snapshot_pools_at(
    provider: &DynProvider,
    pools: &[PoolInfo],
    block: u64,
    at: BlockId,
) -> Result<Vec<PoolSnapshot>> {
    pools_at(provider, pools, block, at, Absent::NoAnswer).await
}

async fn pools_at(
    provider: &DynProvider,
    pools: &[PoolInfo],
    block: u64,
    at: BlockId,
    rule: Absent,
) -> Result<Vec<PoolSnapshot>> {
    let mut out = Vec::new();
    for p in pools {
        let snap = if p.protocol.is_v3() {
            v3_at(provider, p, block, at, rule)
                .await?
                .map(PoolSnapshot::V3)
        } else {
            reserves_at(provider, p, block, at, rule)
                .await?
                .map(PoolSnapshot::Reserves)
        };
        out.extend(snap);
    }
    Ok(out)
}

/// The state of one V3 pool at the end of `block`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V3Snapshot {
    pub pool: Address,
    pub block: u64,
    /// Decimal string, like every wide integer of the dataset.
    pub sqrt_price_x96: String,
    pub tick: i32,
    pub liquidity: String,
    /// Initialized ticks in order: (tick, liquidity gross, liquidity net), decimal strings. Ticks
    /// with a zero net are kept: they still end a swap step, and every step rounds. (A list, not a
    /// map: JSON map keys are strings, which the tagged enum around this cannot turn into ints.)
    pub ticks: Vec<(i32, String, String)>,
}

fn rpc(pool: Address, what: &str, e: impl std::fmt::Display) -> DataError {
    DataError::Rpc {
        method: "eth_call".into(),
        attempts: 1,
        message: format!("snapshot of pool {pool}: {what}: {e}"),
    }
}

/// Reads a V3 pool's state at `block`. `None` if the pool was not initialized yet (or did not
/// answer).
pub async fn snapshot_v3(
    provider: &DynProvider,
    info: &PoolInfo,
    block: u64,
) -> Result<Option<V3Snapshot>> {
    v3_at(
        provider,
        info,
        block,
        BlockId::number(block),
        Absent::AnyFailure,
    )
    .await
}

async fn v3_at(
    provider: &DynProvider,
    info: &PoolInfo,
    block: u64,
    at: BlockId,
    rule: Absent,
) -> Result<Option<V3Snapshot>> {
    let pool = info.address;
    let c = IV3PoolState::new(pool, provider);
    let s0 = match c.slot0().block(at).call().await {
        Ok(s0) => s0,
        Err(e) => return absent(e, rule, pool, "slot0()"),
    };
    if s0.sqrtPriceX96.is_zero() {
        return Ok(None);
    }
    let liquidity = c
        .liquidity()
        .block(at)
        .call()
        .await
        .map_err(|e| rpc(pool, "liquidity()", e))?;
    let spacing = info
        .tick_spacing
        .ok_or_else(|| DataError::Config(format!("pool {pool} has no tick spacing")))?;
    let ticks = match read_ticks(provider, pool, spacing, at, TickRead::Lens).await {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!("pool {pool}: the tick lens failed ({e}); reading word by word");
            read_ticks(provider, pool, spacing, at, TickRead::Words).await?
        }
    };
    Ok(Some(V3Snapshot {
        pool,
        block,
        sqrt_price_x96: U256::from(s0.sqrtPriceX96).to_string(),
        tick: s0.tick.as_i32(),
        liquidity: liquidity.to_string(),
        ticks,
    }))
}

/// How a pool's initialized ticks are read from the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickRead {
    /// One `eth_call` of `contracts/DexlabTickLens.sol`, its code put at a scratch address by a
    /// state override (needs a node with state overrides and a call gas cap above ~10 M gas for
    /// tick spacing 1).
    Lens,
    /// One call per tick-bitmap word of the whole range, and one per initialized tick.
    Words,
}

/// Where the tick lens's code is put for its call: no key and no code on any chain.
const LENS_ADDRESS: Address =
    alloy::primitives::address!("00000000000000000000000000000000de1ab1e5");

/// Every initialized tick of the V3-style pool `pool` at `at`, lowest first: (tick, gross, net).
pub async fn read_ticks(
    provider: &DynProvider,
    pool: Address,
    spacing: i32,
    at: BlockId,
    how: TickRead,
) -> Result<Vec<(i32, String, String)>> {
    if how == TickRead::Lens {
        use alloy::providers::Provider;
        use alloy::rpc::types::state::{AccountOverride, StateOverride};
        use alloy::sol_types::SolCall;
        let code = crate::tools::artifact("DexlabTickLens")?
            .deployed_bytecode
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                DataError::Tooling("the DexlabTickLens artifact has no runtime code".into())
            })?;
        let call = IDexlabTickLens::ticksCall {
            pool,
            spacing: I24::try_from(spacing)
                .map_err(|_| DataError::Config(format!("pool {pool}: tick spacing {spacing}")))?,
        };
        let tx = alloy::rpc::types::TransactionRequest::default()
            .to(LENS_ADDRESS)
            .input(call.abi_encode().into());
        let overrides: StateOverride = [(LENS_ADDRESS, AccountOverride::default().with_code(code))]
            .into_iter()
            .collect();
        let ret = provider
            .call(tx)
            .block(at)
            .overrides(overrides)
            .await
            .map_err(|e| rpc(pool, "the tick lens", e))?;
        let r = IDexlabTickLens::ticksCall::abi_decode_returns(&ret)
            .map_err(|e| rpc(pool, "the tick lens's answer", e))?;
        return Ok(r
            .tick
            .iter()
            .zip(&r.gross)
            .zip(&r.net)
            .map(|((t, g), n)| (t.as_i32(), g.to_string(), n.to_string()))
            .collect());
    }
    let c = IV3PoolState::new(pool, provider);
    let max_word = (887_272 / spacing) >> 8;
    let words: Vec<i16> = (-max_word - 1..=max_word).map(|w| w as i16).collect();
    let bitmaps: Vec<(i16, U256)> = futures::stream::iter(words)
        .map(|w| {
            let c = c.clone();
            async move {
                c.tickBitmap(w)
                    .block(at)
                    .call()
                    .await
                    .map(|b| (w, b))
                    .map_err(|e| rpc(pool, "tickBitmap()", e))
            }
        })
        .buffered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let mut ticks = Vec::new();
    for (w, bits) in bitmaps {
        if bits.is_zero() {
            continue;
        }
        for bit in 0..256 {
            if bits.bit(bit) {
                let t = ((w as i32) * 256 + bit as i32) * spacing;
                let info = c
                    .ticks(I24::try_from(t).expect("tick in range"))
                    .block(at)
                    .call()
                    .await
                    .map_err(|e| rpc(pool, "ticks()", e))?;
                ticks.push((
                    t,
                    info.liquidityGross.to_string(),
                    info.liquidityNet.to_string(),
                ));
            }
        }
    }
    Ok(ticks)
}

pub fn save(root: &Path, snaps: &[PoolSnapshot]) -> Result<()> {
    crate::dataset::write_json_atomic(&root.join("snapshots.json"), &snaps)
}

/// The dataset's snapshots (none if it has no `snapshots.json`).
pub fn load(root: &Path) -> Result<Vec<PoolSnapshot>> {
    let p = root.join("snapshots.json");
    if !p.exists() {
        return Ok(Vec::new());
    }
    crate::dataset::read_json(&p)
}

impl V3Snapshot {
    /// Seeds a replayer with this snapshot.
    pub fn seed(&self, rp: &mut crate::replay::Replayer) -> Result<()> {
        let bad = |what: &str| DataError::Dataset {
            path: "snapshots.json".into(),
            message: format!("pool {}: bad {what}", self.pool),
        };
        let sqrt: U256 = self
            .sqrt_price_x96
            .parse()
            .map_err(|_| bad("sqrt_price_x96"))?;
        let liq: u128 = self.liquidity.parse().map_err(|_| bad("liquidity"))?;
        let mut ticks = BTreeMap::new();
        for (t, gross, net) in &self.ticks {
            ticks.insert(
                *t,
                (
                    gross.parse::<u128>().map_err(|_| bad("liquidity gross"))?,
                    net.parse::<i128>().map_err(|_| bad("liquidity net"))?,
                ),
            );
        }
        if rp.infos.contains_key(&self.pool) {
            rp.seed_v3(self.pool, sqrt, self.tick, liq, ticks);
        }
        Ok(())
    }
}
