//! The backtester: replays a tape through a strategy and fills its bundles the way the chain would,
//! and where it cannot know, the way that does not flatter the strategy.
//!
//! What is simulated, per block (all amounts integers, every swap through the exact pool math):
//! - **Queue by priority fee.** A bundle decided at block `n` is due at `n + latency`. In that
//!   block it lands after every historical transaction that paid a priority fee at least as high
//!   as its own (ties go to history: who arrived first among equal bids is unknown) and before
//!   the others. Without fee data (imported logs have no receipts) it lands where
//!   [`QueueAssumption`] says, `last` by default, and every report states the assumption.
//! - **A rival that bids like a rival.** For each arbitrage we send, a rival goes after the same
//!   route with probability `p_rival`. It sizes for its own profit (exact optimum, not our size),
//!   bids a share of that profit drawn from `[rival_bid_share_min, rival_bid_share_max]` as
//!   priority fee, and its bundle is atomic: where it lands it re-sizes and only executes if it
//!   still profits after its gas. The higher bid lands first (ties by a seeded draw). The draws
//!   depend on (seed, block, route) only, so every parameter set meets the same rival (common
//!   random numbers).
//! - **Fills.** Each leg fills on the state where the bundle lands; if a pool cannot fill or the
//!   output is below the bundle's minimum, it reverts: the pools are restored and
//!   `revert_fraction` of the gas is still paid. Single swaps therefore slip when the flow ahead of
//!   them moved the price, and their `min_amount_out` binds.
//! - **Gas** = gas used x (base fee + priority fee) plus the OP-stack L1 data fee, valued in the
//!   quote token at reference prices and deducted from the quote balance (a debt when it cannot).
//!   A bundle whose input exceeds the balance is rejected (not sent, no gas).
//! - **Impact that persists (counterfactual replay).** Once our fill (or the rival's) has changed
//!   a pool, the pool has diverged from history: later historical events on it are re-executed as
//!   flows on our state (swaps by their input, exact-in, stopped at the price history's swap left;
//!   V2/Solidly deposits as amounts and withdrawals pro rata; V3 mints and burns on the tick map)
//!   instead of overwriting it with the recorded state, until the two coincide again. History's own state of the pool is kept beside
//!   ours. Metrics count the events replayed on diverged pools and the swaps that could not
//!   execute there (their senders would have reverted). With no fills of ours, the replay is
//!   history, bit for bit.
//! - **Marking.** Holdings are valued at reference prices: history's state of each pool, which our
//!   own trades did not move. At the last block of a window every open position is closed in its
//!   best pool with exact math on the state we left, paying the swap's gas at the base fee; the
//!   difference from the mark is reported as `close_cost_quote` and is part of net PnL.
//! - **Warm-up.** [`run_from`] feeds the strategy up to [`Strategy::warmup_blocks`] blocks
//!   before the window (no balances, nothing sent), so short test windows do not start it cold.
//! - **Errors stay errors**: gas or holdings that cannot be priced and a strategy's swallowed
//!   errors (a model that fails to score) are counted, with the first, in the metrics.
//!
//! What is assumed, and which way it biases the result:
//! - Historical flows do not know we traded. Replayed in full, an arbitrageur's swap that closed
//!   a gap in history would overshoot on a pool we had already moved and open a gap that never
//!   existed, for us to take again (measured: it tripled the devnet arbitrage's out-of-sample
//!   PnL). So a flow stops at the price history's swap left, and one that finds our price already
//!   past it does not run. That also drops noise flow which would have moved the price our way
//!   after we bought (pessimistic), and keeps flow that would have stopped short in history (its
//!   sender had a price limit we do not see). Stable Solidly pools replay the whole input.
//!   `diverged_events` says how much of a run rests on this.
//! - A V3 pool's ticks initialised before the data begins are unknown (no liquidity change there):
//!   on a diverged pool nothing re-anchors the active liquidity as history's swap events do. Either
//!   direction.
//! - The rival goes after our route only, with a profit-share bid drawn independently of the
//!   market; real competition can be fiercer (several rivals, other routes) or absent. The
//!   defaults (a rival half the time, bidding 20-90 % of its profit) are an assumption, not a
//!   measurement; set them from the chain you trade.
//! - Without fee data, `last` puts us behind every transaction of the block (pessimistic for a
//!   strategy that needs to be first, which is what a searcher without a fee bid gets).
//! - Gas used per leg is a configured estimate, not the executor's measured gas.
//!
//! Same tape, strategy, parameters and config give bit-identical results.

use std::ops::Range;

use alloy_primitives::{Address, U256};
use dexlab_strategy::market::{Market, to_human};
use dexlab_strategy::{BundleTag, FillStatus, Strategy, TradingEnv};
use serde::{Deserialize, Serialize};

use crate::driver::Driver;
pub use crate::driver::Timing;
use crate::ledger::Ledger;
pub use crate::ledger::Tally;
use crate::metrics::{Metrics, compute_metrics};
use crate::sim::SimExecutor;
use crate::tape::Tape;

/// The rival searcher: for every arbitrage we send, another searcher may go after the same route
/// in the same block. It sizes for its own profit, bids a share of that profit as priority fee,
/// and sends an atomic bundle that only executes if it still profits where it lands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Competition {
    /// Probability that a rival goes after the same opportunity.
    pub p_rival: f64,
    /// The rival's bid, as a share of its expected profit after base-fee gas, is drawn uniformly
    /// from [`rival_bid_share_min`, `rival_bid_share_max`] for each opportunity.
    pub rival_bid_share_min: f64,
    pub rival_bid_share_max: f64,
}

impl Default for Competition {
    fn default() -> Self {
        Self {
            p_rival: 0.5,
            rival_bid_share_min: 0.2,
            rival_bid_share_max: 0.9,
        }
    }
}

impl Competition {
    /// No rival at all (tests, and runs that want the upper bound).
    pub fn none() -> Self {
        Self {
            p_rival: 0.0,
            ..Self::default()
        }
    }

    /// Checks every value, naming the key that is wrong.
    pub fn validate(&self, prefix: &str) -> std::result::Result<(), String> {
        let unit = |x: f64| (0.0..=1.0).contains(&x);
        if !unit(self.p_rival) {
            return Err(format!(
                "{prefix}.p_rival = {} must be in [0, 1]",
                self.p_rival
            ));
        }
        if !(unit(self.rival_bid_share_min)
            && unit(self.rival_bid_share_max)
            && self.rival_bid_share_min <= self.rival_bid_share_max)
        {
            return Err(format!(
                "{prefix}.rival_bid_share_min = {} and rival_bid_share_max = {} must satisfy \
                 0 <= min <= max <= 1",
                self.rival_bid_share_min, self.rival_bid_share_max
            ));
        }
        Ok(())
    }
}

/// Where our bundle lands in a block whose transactions' priority fees the data does not record
/// (imported logs have no receipts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueAssumption {
    /// After every transaction of the block: pessimistic, the default.
    #[default]
    Last,
    /// Before every transaction of the block: optimistic, what backtests commonly assume.
    First,
}

impl QueueAssumption {
    /// The sentence every report that relies on it prints.
    pub fn statement(self) -> &'static str {
        match self {
            QueueAssumption::Last => {
                "the data has no transaction fees: our bundles were assumed to land after every \
                 transaction of their block (backtest.queue_without_fees = \"last\", pessimistic)"
            }
            QueueAssumption::First => {
                "the data has no transaction fees: our bundles were assumed to land before every \
                 transaction of their block (backtest.queue_without_fees = \"first\", optimistic)"
            }
        }
    }
}

/// Everything a backtest needs besides the tape and the strategy, validated and resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecConfig {
    pub env: TradingEnv,
    /// Starting balance in the quote token (raw units).
    pub capital: U256,
    pub competition: Competition,
    /// Number of periods the window is cut into for return-based metrics.
    pub periods: usize,
    /// Used for annualising when the data has no timestamps.
    pub block_time_secs: f64,
    /// Seed of the competition draws.
    pub seed: u64,
    /// Queue position in blocks without priority-fee data.
    pub queue_without_fees: QueueAssumption,
    /// At most this many blocks before a window warm the strategy up (see
    /// [`Strategy::warmup_blocks`]).
    pub max_warmup_blocks: usize,
    /// Latency and deadline of bundles: chain facts, not strategy parameters.
    pub timing: Timing,
    /// Risk limits between the strategy and the executor (`None`: none).
    pub risk: Option<crate::risk::RiskLimits>,
}

/// One bundle's accounting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TradeRecord {
    pub decided_block: u64,
    /// The block it landed in (the decision block when rejected, the block it expired in).
    pub included_block: u64,
    pub tag: BundleTag,
    pub status: FillStatus,
    /// A rival took the same route earlier in the block.
    pub lost_to_competitor: bool,
    /// Historical events of the inclusion block that ran before the bundle.
    #[serde(default)]
    pub queue_position: u32,
    pub token_in: String,
    pub token_out: String,
    /// Exact raw amounts as decimal strings.
    pub amount_in: String,
    pub amount_out: String,
    pub expected_out: String,
    pub gas_used: u64,
    pub l2_fee_wei: String,
    pub l1_fee_wei: String,
    /// The OP-stack operator fee (Isthmus/Jovian), 0 where the chain charges none.
    #[serde(default)]
    pub operator_fee_wei: String,
    pub gas_quote: f64,
    /// Realised PnL in quote units when the trade closes a position (an arbitrage always does).
    pub realized_pnl_quote: Option<f64>,
}

/// Shared with the store, the lab and the live engine (`dexlab-types`).
pub use dexlab_types::EquityPoint;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacktestResult {
    pub metrics: Metrics,
    /// Filled only when recording (not during optimisation).
    pub trades: Vec<TradeRecord>,
    /// One point per period (the last block of each).
    pub equity: Vec<EquityPoint>,
}

/// Runs `strategy` over blocks `window` of `tape`, starting from `start` (the market after the
/// blocks before the window). No warm-up: see [`run_from`].
pub fn run(
    tape: &Tape,
    start: &Market,
    window: Range<usize>,
    strategy: &mut dyn Strategy,
    cfg: &ExecConfig,
    record: bool,
) -> BacktestResult {
    run_from(tape, start, window.start, window, strategy, cfg, record)
}

/// Runs `strategy` over blocks `window` of `tape`; `start` is the market after blocks `..from`
/// (`from <= window.start`). Up to [`Strategy::warmup_blocks`] of the blocks `from..window.start`
/// warm the strategy up: it sees them with no balances, and anything it sends is rejected
/// unsent and not counted. Blocks before a window are history, so warming up leaks nothing.
pub fn run_from(
    tape: &Tape,
    start: &Market,
    from: usize,
    window: Range<usize>,
    strategy: &mut dyn Strategy,
    cfg: &ExecConfig,
    record: bool,
) -> BacktestResult {
    let window = window.start.min(tape.blocks.len())..window.end.min(tape.blocks.len());
    let from = from.min(window.start);
    let quote = cfg.env.quote;
    let quote_dec = start.decimals(quote).unwrap_or(18);
    let ledger = Ledger::new(quote, cfg.env.native, quote_dec, cfg.capital, record);
    let exec = SimExecutor::new(cfg, start.pools.len(), tape.has_priority_fees);
    let mut d = Driver::new(&cfg.env, cfg.timing, start.clone(), exec, ledger);
    d.risk = cfg.risk.clone().map(crate::risk::RiskManager::new);
    let mut equity = Vec::new();
    let mut returns_equity = Vec::with_capacity(cfg.periods + 1);
    let mut exposure_sum = 0.0;

    // Warm-up: replay up to the strategy's own horizon silently, then let it watch.
    let warm = strategy
        .warmup_blocks()
        .min(cfg.max_warmup_blocks)
        .min(window.start - from);
    for bi in from..window.start {
        let watch = bi >= window.start - warm;
        d.warm(tape.blocks[bi], tape.events_of(bi), strategy, watch);
    }
    d.ledger.tally.warmup_blocks = warm as u64;

    let has_time = tape.blocks[window.clone()].iter().any(|b| b.timestamp > 0);
    let time_of = |i: usize| -> f64 {
        let b = &tape.blocks[i];
        if has_time {
            b.timestamp as f64
        } else {
            b.number as f64 * cfg.block_time_secs
        }
    };
    let (t0, t1) = if window.is_empty() {
        (0.0, 0.0)
    } else {
        (time_of(window.start), time_of(window.end - 1))
    };
    let period = ((t1 - t0) / cfg.periods.max(1) as f64).max(1e-9);
    let mut next_mark = t0;
    let initial_equity = to_human(cfg.capital, quote_dec);
    let mut final_equity = initial_equity;
    let mut close_cost = 0.0;

    for bi in window.clone() {
        let block = tape.blocks[bi];
        // The block in priority order (historical transactions, our due bundles and their
        // rivals), then the strategy's decision on its final state.
        d.step(block, tape.events_of(bi), strategy);
        // Mark to market once per period, at prices our own trades did not move; at the last
        // block, what closing every position would really return.
        let t = time_of(bi);
        let last = bi + 1 == window.end;
        if t >= next_mark || last {
            let (mut eq, exposed) = d.valuation();
            if last {
                let closed = d.close_out();
                close_cost = eq - closed;
                eq = closed;
                final_equity = closed;
            }
            returns_equity.push(eq);
            exposure_sum += if eq > 0.0 { exposed / eq } else { 0.0 };
            if record {
                equity.push(EquityPoint {
                    block: block.number,
                    timestamp: block.timestamp,
                    equity: eq,
                });
            }
            while next_mark <= t {
                next_mark += period;
            }
        }
    }
    let mut tally = std::mem::take(&mut d.ledger.tally);
    d.exec.stats.add_to(&mut tally);
    if let Some((n, first)) = strategy.errors() {
        tally.errors += n;
        tally.first_error.get_or_insert(first);
    }
    let usd_per_quote = usd_per_quote(&d.market, quote);
    let mut metrics = compute_metrics(
        initial_equity,
        final_equity,
        &returns_equity,
        exposure_sum,
        &tally,
        quote_dec,
        (t1 - t0).max(0.0),
        usd_per_quote,
    );
    metrics.close_cost_quote = close_cost;
    metrics.queue_assumption =
        (!tape.has_priority_fees).then(|| cfg.queue_without_fees.statement().to_owned());
    BacktestResult {
        metrics,
        trades: d.ledger.trades.take().unwrap_or_default(),
        equity,
    }
}

const STABLES: [&str; 6] = ["USDC", "USDT", "DAI", "USDBC", "USDC.E", "USDS"];

/// USD per quote token: 1 for a stablecoin, else the mid price against a stablecoin pool.
fn usd_per_quote(market: &Market, quote: Address) -> Option<f64> {
    let is_stable = |sym: &str| STABLES.contains(&sym.to_ascii_uppercase().as_str());
    if market.symbol(quote).is_some_and(is_stable) {
        return Some(1.0);
    }
    market.pools.iter().enumerate().find_map(|(i, m)| {
        let other = if m.token0 == quote {
            (m.token1, m.symbol1.as_str())
        } else if m.token1 == quote {
            (m.token0, m.symbol0.as_str())
        } else {
            return None;
        };
        if !is_stable(other.1) {
            return None;
        }
        market.price_of(i, quote).filter(|_| other.0 != quote)
    })
}
