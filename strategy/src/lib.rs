//! dexlab-strategy: the one strategy code path that backtest, paper and live trading share.
//!
//! The seam follows the collector → strategy → executor split: a collector (Parquet replay in
//! `dexlab-evolve`, node subscriptions in live) applies events to a [`Market`] and calls the
//! strategy; the strategy looks at exact pool state and returns [`Action`]s (swap bundles); an
//! executor (simulated fills in the backtester, a signing executor live) carries them out and reports
//! [`Fill`]s back. Strategies do no I/O, read time only from the injected [`Clock`], and are
//! deterministic, so rayon can run thousands of backtests and the live engine can call the same
//! code inside tokio. Each strategy declares its typed, bounded [`ParamSpace`]; see [`registry`].
//!
//! Models enter through the [`Scorer`] trait and [`online`] features, which compute the feature
//! columns of a dataset from the market block by block; the crate knows nothing of burn.
//!
//! The crate depends on `dexlab-market`, `dexlab-amm` and `alloy-primitives` only: no tokio, no provider stack, no
//! Polars. Amounts are integers in the token's smallest unit; floats appear only in signals
//! (mid prices, z-scores) and in reports.
//!
//! No cargo features.

pub mod arb;
pub mod gas;
pub mod gated;
pub mod online;
pub mod params;
pub mod registry;
pub mod reversion;
pub mod single;

/// The market strategies see: `dexlab-market`, re-exported so strategy code needs one import.
pub use dexlab_market as market;

use alloy_primitives::{Address, U256};
use serde::{Deserialize, Serialize};

pub use gated::{ModelHandle, Scorer};
pub use market::{BlockInfo, Family, Market, PoolMeta, PoolState};
pub use online::OnlineFeatures;
pub use params::{ParamKind, ParamSpace, ParamSpec, Params};

/// Time as a strategy sees it. The backtester drives a [`ReplayClock`] from block timestamps; the
/// live engine implements it over the node's latest header.
/// Several blocks can share one seconds timestamp (Base makes one every 200 ms): order is the
/// block number, never the timestamp.
pub trait Clock {
    /// Unix seconds of the current block.
    fn now(&self) -> u64;
    fn block(&self) -> u64;
    /// Unix milliseconds of the current block, where the chain gives them.
    fn now_ms(&self) -> Option<u64> {
        None
    }
}

/// A clock set from replayed blocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayClock {
    pub block: u64,
    pub timestamp: u64,
    pub timestamp_ms: Option<u64>,
}

impl ReplayClock {
    pub fn at(block: &BlockInfo) -> Self {
        Self {
            block: block.number,
            timestamp: block.timestamp,
            timestamp_ms: block.timestamp_ms,
        }
    }
}

impl Clock for ReplayClock {
    fn now(&self) -> u64 {
        self.timestamp
    }
    fn block(&self) -> u64 {
        self.block
    }
    fn now_ms(&self) -> Option<u64> {
        self.timestamp_ms
    }
}

/// The environment a strategy trades in, fixed for a run: which token it accounts in, the chain's
/// native token (gas), how gas is charged, and the trained model a model-driven strategy consults.
#[derive(Debug, Clone, PartialEq)]
pub struct TradingEnv {
    /// The token profits are measured in (and arbitrage starts and ends in).
    pub quote: Address,
    /// Wrapped native token, to value gas in the quote token.
    pub native: Address,
    pub gas: gas::GasConfig,
    /// The model of [`gated`] strategies; `None` for the others.
    pub model: Option<ModelHandle>,
}

/// What a strategy may read besides the market: time, its balances, the trading environment.
pub struct Context<'a> {
    pub clock: &'a dyn Clock,
    /// Balance per token (raw units).
    pub balances: &'a dyn Fn(Address) -> U256,
    pub env: &'a TradingEnv,
    /// A pool's reference mid price (token0 in token1, human units): the price our own trades did
    /// not move. In a backtest, the pool's historical state; to mark positions, not to trade.
    pub mark: &'a dyn Fn(usize) -> Option<f64>,
}

impl Context<'_> {
    pub fn balance(&self, token: Address) -> U256 {
        (self.balances)(token)
    }

    /// The reference price of `base` in the pool's other token (see [`Context::mark`]).
    pub fn mark_price_of(&self, market: &Market, pool: usize, base: Address) -> Option<f64> {
        let p = (self.mark)(pool)?;
        Some(if market.pools[pool].token0 == base {
            p
        } else {
            1.0 / p
        })
    }
}

/// One hop of a bundle: sell the running amount of `token_in` in `pool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    pub pool: usize,
    pub token_in: Address,
}

/// A chain of exact-input swaps executed atomically by the executor contract: the first leg sells
/// `amount_in`, every next leg sells the previous leg's output, and the whole bundle reverts (gas
/// still paid) if the last output is below `min_amount_out`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    pub legs: Vec<Leg>,
    pub amount_in: U256,
    pub min_amount_out: U256,
    /// Priority fee bid, wei per gas.
    pub priority_fee: u128,
    /// The output the strategy expected at decision time.
    pub expected_out: U256,
    pub tag: BundleTag,
}

/// What a bundle is for. The backtester's rival goes after arbitrages only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BundleTag {
    /// A cycle that starts and ends in the same token.
    Arb,
    /// A single swap that spends the quote token.
    Buy,
    /// A single swap into the quote token (or between two other tokens).
    Sell,
}

impl BundleTag {
    pub fn as_str(self) -> &'static str {
        match self {
            BundleTag::Arb => "arb",
            BundleTag::Buy => "buy",
            BundleTag::Sell => "sell",
        }
    }
}

impl std::fmt::Display for BundleTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Bundle {
    pub fn token_in(&self) -> Address {
        self.legs[0].token_in
    }
}

/// What a strategy asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Submit(Bundle),
}

/// How a submitted bundle ended. Every bundle sent gets exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FillStatus {
    Filled,
    /// Included but the output was below the minimum (or a pool could not fill): gas paid.
    Reverted,
    /// Not sent: the balance or capital limit did not allow it.
    Rejected,
    /// Sent but not included by its deadline block (or dropped by the node): no gas, nothing
    /// moved.
    Expired,
}

/// The outcome of a bundle, reported back to the strategy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    pub bundle: Bundle,
    pub status: FillStatus,
    pub included_block: u64,
    pub amount_out: U256,
    pub token_out: Address,
}

/// A trading strategy. Implementations are deterministic and do no I/O.
pub trait Strategy: Send {
    fn name(&self) -> &'static str;

    /// A pool's state changed (a replayed or observed event, or one of our fills).
    fn on_pool_update(&mut self, _market: &Market, _pool: usize) {}

    /// The block is complete: push actions, to be included after the execution latency (a chain
    /// fact set in the execution config, not a strategy parameter).
    fn on_block(&mut self, market: &Market, ctx: &Context<'_>, out: &mut Vec<Action>);

    /// The outcome of one of this strategy's bundles.
    fn on_fill(&mut self, _fill: &Fill) {}

    /// Blocks of history the strategy wants to see before it trades (moving averages, feature
    /// windows). A backtest window feeds it that many blocks before its start, with no balances
    /// and no fills, so a short test window does not start it cold.
    fn warmup_blocks(&self) -> usize {
        0
    }

    /// Errors the strategy swallowed to keep trading (e.g. a model that could not score a row):
    /// how many, and the first. Runs report them, so a failing model is not read as "no trade".
    fn errors(&self) -> Option<(u64, String)> {
        None
    }
}
