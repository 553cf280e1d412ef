//! dexlab-live: dexlab's link to a running chain, a node feed of blocks with the logs of the
//! tracked pools, and the pools' state bootstrapped from the node.
//!
//! [`feed::NodeFeed`] is the collector a live engine drives: it turns a node (WebSocket
//! subscription to new heads, or HTTP polling) into an ordered stream of
//! [`feed::FeedEvent`]s, one [`feed::NodeBlock`] per block with no gap and no duplicate, and a
//! [`feed::FeedEvent::Reorg`] when the chain it delivered is replaced. Heads are only hints: blocks
//! are fetched by number and chained by parent hash, so a lost notification, a dropped connection
//! or a reorg all end in the same backfill from the last block delivered. Nothing assumes one
//! block per second or unique timestamps; a node's millisecond timestamp is kept when it sends
//! one. [`bootstrap`] reads the tracked pools' state at one block (pinned by hash) with the
//! dataset's snapshot code, so that the feed can start right after it.
//!
//! [`paper`] runs `dexlab-engine`'s session engine on the feed: paper trading, recorded block
//! by block and resumable, every bundle checked against the node through [`executor`]'s
//! simulation of the on-chain executor contract, under the engine's risk limits and the
//! operator's kill switch (commands read from the store before every block).
//!
//! [`onchain`] is live mode's executor side, in the same session loop with the executor
//! swapped: each bundle checked with `eth_call` on the operator's deployed executor, signed and
//! sent; receipts turned into the engine's chain outcomes (outputs from the `Transfer` logs, gas
//! from the receipt); the books reconciled with the chain's balances every N blocks, a difference
//! halting trading.
//!
//! [`signer`] holds the operator's key (environment or encrypted keystore, never printed) and
//! sends its transactions: local nonces persisted and reconciled with the chain, EIP-1559 fees
//! under a cap, receipts with their L1 fee, a late transaction cancelled by a bumped replacement.
//! [`gas`] measures the executor's gas per bundle on an anvil node (the devnet or a fork) and
//! fits the backtester's gas table to it.
//!
//! No cargo features.

pub mod bootstrap;
pub mod error;
pub mod executor;
pub mod feed;
pub mod gas;
pub mod onchain;
pub mod paper;
pub mod signer;

pub use bootstrap::{PoolStates, bootstrap, bootstrap_latest, head_ref};
pub use error::{BootstrapError, FeedError};
pub use feed::{BlockRef, FeedConfig, FeedEvent, FeedStats, NodeBlock, NodeFeed, Start, Transport};
