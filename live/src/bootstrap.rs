//! Pool state read from the node at one block, with the dataset's snapshot code
//! ([`dexlab_data::snapshot`]): V2 reserves, V3 slot0, liquidity and every initialized tick.
//!
//! The block is pinned by hash (EIP-1898, `requireCanonical`), so every call of a bootstrap reads
//! the same block even while the chain moves or reorgs under it; if that block leaves the
//! canonical chain the node refuses, and the bootstrap fails rather than mixing two branches. A
//! live engine seeds its market with [`PoolStates::pools`] and starts its feed with
//! [`crate::Start::After`]`(states.block)`.

use alloy::eips::{BlockId, RpcBlockHash};
use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider};
use dexlab_data::snapshot::{PoolSnapshot, snapshot_pools_at};
use dexlab_data::types::PoolInfo;

use crate::error::BootstrapError;
use crate::feed::BlockRef;

/// The tracked pools' state at the end of one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStates {
    pub block: BlockRef,
    /// One per pool that had state at `block`, in the order of the pools asked for.
    pub pools: Vec<PoolSnapshot>,
    /// Pools without state at `block`: no code yet, or a V3 pool not initialized.
    pub absent: Vec<Address>,
}

/// Reads `pools` at the end of `block`. Strict: a failed request is an error, never a pool
/// left out.
pub async fn bootstrap(
    provider: &DynProvider,
    pools: &[PoolInfo],
    block: BlockRef,
) -> Result<PoolStates, BootstrapError> {
    let at = BlockId::Hash(RpcBlockHash::from_hash(block.hash, Some(true)));
    let snaps = snapshot_pools_at(provider, pools, block.number, at)
        .await
        .map_err(|source| BootstrapError::Snapshot {
            block,
            pools: pools.len(),
            source,
        })?;
    let absent = pools
        .iter()
        .map(|p| p.address)
        .filter(|a| !snaps.iter().any(|s| snapshot_pool(s) == *a))
        .collect();
    Ok(PoolStates {
        block,
        pools: snaps,
        absent,
    })
}

/// The node's newest block.
pub async fn head_ref(provider: &DynProvider) -> Result<BlockRef, BootstrapError> {
    block_ref(provider, alloy::eips::BlockNumberOrTag::Latest).await
}

/// [`bootstrap`] at the parent of the node's newest block: the newest state every node serves
/// from a settled copy.
///
/// A read at the head itself is not safe on every node: anvil serves the head from its live
/// state, so a request pinned to the head's hash that waits behind the mining of the next block
/// answers with the next block's state (seen here as a bootstrap one swap ahead of its block).
/// Blocks below the head come from stored states. One block of age costs a live engine nothing:
/// its feed replays the head's logs on top.
pub async fn bootstrap_latest(
    provider: &DynProvider,
    pools: &[PoolInfo],
) -> Result<PoolStates, BootstrapError> {
    let head = head_ref(provider).await?;
    let block = if head.number == 0 {
        head
    } else {
        block_ref(provider, (head.number - 1).into()).await?
    };
    bootstrap(provider, pools, block).await
}

async fn block_ref(
    provider: &DynProvider,
    at: alloy::eips::BlockNumberOrTag,
) -> Result<BlockRef, BootstrapError> {
    let node = |message: String| BootstrapError::Node {
        url: "the provider's node".into(),
        message,
    };
    let b = provider
        .get_block_by_number(at)
        .await
        .map_err(|e| node(format!("eth_getBlockByNumber({at}): {e}")))?
        .ok_or_else(|| node(format!("the node has no block {at}")))?;
    Ok(BlockRef {
        number: b.header.number,
        hash: b.header.hash,
    })
}

fn snapshot_pool(s: &PoolSnapshot) -> Address {
    match s {
        PoolSnapshot::V3(v) => v.pool,
        PoolSnapshot::Reserves(r) => r.pool,
    }
}
