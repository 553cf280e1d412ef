//! Errors of the live crate. Each says what failed and where (node, block, pool).

use std::time::Duration;

use crate::feed::BlockRef;

/// Why a [`crate::NodeFeed`] stopped. A dropped connection is never one of these by itself: the
/// feed reconnects and backfills until its retry budget runs out.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("invalid feed configuration: {0}")]
    Config(String),
    /// No request to the node succeeded for the whole retry budget.
    #[error(
        "node {url} unreachable for {:.1}s ({attempts} attempts, next block {next_block}): {last_error}",
        waited.as_secs_f64()
    )]
    NodeGone {
        url: String,
        waited: Duration,
        attempts: u32,
        next_block: u64,
        last_error: String,
    },
    /// The node kept answering a request with an error for the whole retry budget.
    #[error("{method} for block {block} failed {attempts} times over {:.1}s: {message}", waited.as_secs_f64())]
    Rpc {
        method: &'static str,
        block: u64,
        attempts: u32,
        waited: Duration,
        message: String,
    },
    /// After a reconnect the endpoint serves another chain.
    #[error("{url} serves chain {got}; this feed started on chain {expected}")]
    ChainChanged {
        url: String,
        expected: u64,
        got: u64,
    },
    /// A reorg replaced every block the feed still remembers: it cannot say where the branches
    /// meet. Bootstrap again from the node.
    #[error(
        "reorg at block {at} deeper than the feed's window: none of blocks {oldest}..={newest} is still canonical"
    )]
    ReorgTooDeep { at: u64, oldest: u64, newest: u64 },
    /// The node sent a block or log the feed cannot use.
    #[error("block {block}: {message}")]
    BadBlock { block: u64, message: String },
    /// The feed ended with an error before; it does not restart by itself.
    #[error("the feed stopped earlier: {0}")]
    Stopped(String),
}

/// Why pool state could not be read from the node at a block.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("bootstrap from {url}: {message}")]
    Node { url: String, message: String },
    #[error("bootstrap of {pools} pool(s) at block {} ({}): {source}", block.number, block.hash)]
    Snapshot {
        block: BlockRef,
        pools: usize,
        #[source]
        source: dexlab_data::DataError,
    },
}
