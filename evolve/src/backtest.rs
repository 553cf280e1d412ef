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

use std::collections::BTreeMap;
use std::ops::Range;

use alloy_primitives::{Address, U256};
use dexlab_strategy::arb::{Sized, bid, optimal_input};
use dexlab_strategy::gas::{bundle_gas, convert_with, cost_wei};
use dexlab_strategy::market::{Market, PoolState, to_human};
use dexlab_strategy::{
    Action, Bundle, Context, Fill, FillStatus, Leg, ReplayClock, Strategy, TradingEnv,
};
use serde::{Deserialize, Serialize};

use crate::metrics::{Metrics, compute_metrics};
use crate::tape::{Tape, TapeEvent, Update, apply, apply_state, replay_flow};

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
}

/// One bundle's accounting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TradeRecord {
    pub decided_block: u64,
    pub included_block: u64,
    pub tag: String,
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

struct Pending {
    include_at: u64,
    decided: u64,
    bundle: Bundle,
}

/// Counters the metrics are computed from.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    pub submitted: u64,
    pub filled: u64,
    pub reverted: u64,
    pub rejected: u64,
    pub lost: u64,
    pub wins: u64,
    pub realizations: u64,
    pub gas_quote: U256,
    pub traded_quote: U256,
    /// Historical events re-executed on pools our trades had moved.
    pub diverged_events: u64,
    /// Of those, swaps that could not execute on our state (their sender would have reverted).
    pub failed_flows: u64,
    /// Rival bundles that executed.
    pub rival_fills: u64,
    pub warmup_blocks: u64,
    /// Errors that did not stop the run (unpriceable gas or holdings, a failing model).
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, message: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
    }
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
    let mut sim = Sim {
        cfg,
        hist: vec![None; start.pools.len()],
        market: start.clone(),
        balances: BTreeMap::from([(quote, cfg.capital)]),
        basis: BTreeMap::new(),
        unpaid_gas: U256::ZERO,
        tally: Tally::default(),
        trades: record.then(Vec::new),
        quote_dec,
        fees_known: tape.has_priority_fees,
        touched: vec![false; start.pools.len()],
    };
    let mut pending: Vec<Pending> = Vec::new();
    let mut actions = Vec::new();
    let mut equity = Vec::new();
    let mut returns_equity = Vec::with_capacity(cfg.periods + 1);
    let mut exposure_sum = 0.0;

    // Warm-up: replay up to the strategy's own horizon silently, then let it watch.
    let warm = strategy
        .warmup_blocks()
        .min(cfg.max_warmup_blocks)
        .min(window.start - from);
    for bi in from..window.start {
        let feed = bi >= window.start - warm;
        sim.market.block = tape.blocks[bi];
        for e in tape.events_of(bi) {
            sim.event(e);
            if feed {
                strategy.on_pool_update(&sim.market, e.pool as usize);
            }
        }
        if feed {
            sim.warmup_block(strategy, &mut actions);
        }
    }
    sim.tally.warmup_blocks = warm as u64;

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
        sim.market.block = block;
        let clock = ReplayClock {
            block: block.number,
            timestamp: block.timestamp,
        };
        let events = tape.events_of(bi);
        // 1. The block in priority order: historical transactions, our due bundles and their
        //    rivals, each where its priority fee puts it.
        let due: Vec<Pending> = if pending.iter().any(|p| p.include_at <= block.number) {
            let (due, rest) = pending
                .drain(..)
                .partition(|p| p.include_at <= block.number);
            pending = rest;
            due
        } else {
            Vec::new()
        };
        let mut next = 0;
        if !due.is_empty() {
            sim.touched.fill(false);
            let queue = sim.queue(&due, events);
            let mut lost = vec![false; due.len()];
            for entry in queue {
                while next < entry.position {
                    sim.event(&events[next]);
                    strategy.on_pool_update(&sim.market, events[next].pool as usize);
                    next += 1;
                }
                match entry.who {
                    Who::Ours(k) => {
                        let fill = sim.execute(&due[k], lost[k], next as u32);
                        for leg in &due[k].bundle.legs {
                            strategy.on_pool_update(&sim.market, leg.pool);
                        }
                        strategy.on_fill(&fill);
                    }
                    Who::Rival(k, sized) => {
                        if sim.rival(&due[k].bundle.legs, entry.priority_fee, sized) {
                            lost[k] = true;
                            for leg in &due[k].bundle.legs {
                                strategy.on_pool_update(&sim.market, leg.pool);
                            }
                        }
                    }
                }
            }
        }
        // 2. The rest of the block's own events.
        for e in &events[next..] {
            sim.event(e);
            strategy.on_pool_update(&sim.market, e.pool as usize);
        }
        // 3. The strategy decides on the block's final state.
        {
            let balances = &sim.balances;
            let bal = |t: Address| balances.get(&t).copied().unwrap_or(U256::ZERO);
            let mark = |i: usize| sim.reference(i).mid_price(&sim.market.pools[i]);
            let ctx = Context {
                clock: &clock,
                balances: &bal,
                env: &cfg.env,
                mark: &mark,
            };
            strategy.on_block(&sim.market, &ctx, &mut actions);
        }
        for a in actions.drain(..) {
            let Action::Submit(bundle) = a;
            sim.tally.submitted += 1;
            pending.push(Pending {
                include_at: block.number + bundle.latency.max(1),
                decided: block.number,
                bundle,
            });
        }
        // 4. Mark to market once per period, at prices our own trades did not move; at the last
        //    block, what closing every position would really return.
        let t = time_of(bi);
        let last = bi + 1 == window.end;
        if t >= next_mark || last {
            let (mut eq, exposed) = sim.valuation();
            if last {
                let closed = sim.close_out();
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
    if let Some((n, first)) = strategy.errors() {
        sim.tally.errors += n;
        sim.tally.first_error.get_or_insert(first);
    }
    let usd_per_quote = usd_per_quote(&sim.market, quote);
    let mut metrics = compute_metrics(
        initial_equity,
        final_equity,
        &returns_equity,
        exposure_sum,
        &sim.tally,
        quote_dec,
        (t1 - t0).max(0.0),
        usd_per_quote,
    );
    metrics.close_cost_quote = close_cost;
    metrics.queue_assumption =
        (!tape.has_priority_fees).then(|| cfg.queue_without_fees.statement().to_owned());
    BacktestResult {
        metrics,
        trades: sim.trades.unwrap_or_default(),
        equity,
    }
}

/// Who takes a place in a block's queue.
#[derive(Debug, Clone, Copy)]
enum Who {
    /// Our due bundle `k`.
    Ours(usize),
    /// The rival going after our due bundle `k`'s route, sized at the top of the block.
    Rival(usize, Sized),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    who: Who,
    priority_fee: u128,
    /// Historical events of the block that run first.
    position: usize,
    tie: f64,
}

/// The simulated chain of one run: the market as our trades left it, history's own state of the
/// pools they moved, and our books.
struct Sim<'a> {
    cfg: &'a ExecConfig,
    market: Market,
    /// History's state of each pool our trades (or a rival's) have moved; `None` while the pool
    /// is as history has it.
    hist: Vec<Option<PoolState>>,
    balances: BTreeMap<Address, U256>,
    /// Cost basis (quote units) of what is held.
    basis: BTreeMap<Address, U256>,
    unpaid_gas: U256,
    tally: Tally,
    trades: Option<Vec<TradeRecord>>,
    quote_dec: u8,
    fees_known: bool,
    /// Pools an event or a fill changed since the top of the block (kept in blocks with bundles
    /// due, so a rival sized at the top need not size again where nothing moved).
    touched: Vec<bool>,
}

impl Sim<'_> {
    /// One historical event. On a pool as history has it, the event's recorded state; on a pool
    /// we moved, the event's flow re-executed on our state, until the two coincide again.
    #[inline]
    fn event(&mut self, e: &TapeEvent) {
        let i = e.pool as usize;
        self.touched[i] = true;
        let Some(h) = &mut self.hist[i] else {
            apply(&mut self.market, e);
            return;
        };
        self.tally.diverged_events += 1;
        let meta = &self.market.pools[i];
        let before = match (&e.update, &*h) {
            (Update::Reserves { .. }, PoolState::V2 { reserve0, reserve1 }) => {
                Some((*reserve0, *reserve1))
            }
            (Update::Reserves { .. }, PoolState::Solidly(p)) => Some((p.reserve0, p.reserve1)),
            _ => None,
        };
        apply_state(meta, h, &e.update);
        let state = &mut self.market.states[i];
        if !replay_flow(meta, state, before, h, &e.update) {
            self.tally.failed_flows += 1;
        }
        if *state == *h {
            self.hist[i] = None;
        }
    }

    /// Records history's state of `pool` before our first change to it.
    fn diverge(&mut self, pool: usize) {
        if self.hist[pool].is_none() {
            self.hist[pool] = Some(self.market.states[pool].clone());
        }
    }

    /// Forgets history's copy of `pool` when our state is history's again.
    fn settle(&mut self, pool: usize) {
        if self.hist[pool].as_ref() == Some(&self.market.states[pool]) {
            self.hist[pool] = None;
        }
    }

    /// The state marks are taken from: history's where we moved the pool.
    fn reference(&self, pool: usize) -> &PoolState {
        self.hist[pool]
            .as_ref()
            .unwrap_or(&self.market.states[pool])
    }

    /// `amount` of `from` in `to` at reference mid prices.
    fn value(&self, amount: U256, from: Address, to: Address) -> Option<U256> {
        convert_with(&self.market.pools, |i| self.reference(i), amount, from, to)
    }

    /// A warm-up block: the strategy decides with no balances; what it sends is rejected unsent.
    fn warmup_block(&mut self, strategy: &mut dyn Strategy, actions: &mut Vec<Action>) {
        let block = self.market.block;
        let clock = ReplayClock {
            block: block.number,
            timestamp: block.timestamp,
        };
        let none = |_: Address| U256::ZERO;
        let mark = |i: usize| self.reference(i).mid_price(&self.market.pools[i]);
        let ctx = Context {
            clock: &clock,
            balances: &none,
            env: &self.cfg.env,
            mark: &mark,
        };
        strategy.on_block(&self.market, &ctx, actions);
        for a in actions.drain(..) {
            let Action::Submit(bundle) = a;
            let token_out = last_token_out(&self.market, &bundle);
            strategy.on_fill(&Fill {
                bundle,
                status: FillStatus::Rejected,
                included_block: block.number,
                amount_out: U256::ZERO,
                token_out,
            });
        }
    }

    /// The order in which `due` bundles and their rivals land among `events`.
    fn queue(&self, due: &[Pending], events: &[TapeEvent]) -> Vec<Entry> {
        let block = self.market.block.number;
        let position = |bid: u128| -> usize {
            if self.fees_known {
                // After every historical transaction that paid more (ties go to history: who
                // arrived first among equal bids is unknown, so assume the worst).
                events
                    .iter()
                    .rposition(|e| u128::from(e.priority_fee) >= bid)
                    .map_or(0, |j| j + 1)
            } else {
                match self.cfg.queue_without_fees {
                    QueueAssumption::Last => events.len(),
                    QueueAssumption::First => 0,
                }
            }
        };
        let mut out = Vec::with_capacity(due.len() * 2);
        for (k, p) in due.iter().enumerate() {
            let key = route_key(&p.bundle.legs);
            out.push(Entry {
                who: Who::Ours(k),
                priority_fee: p.bundle.priority_fee,
                position: position(p.bundle.priority_fee),
                tie: draw(self.cfg.seed, block, key ^ 3),
            });
            if p.bundle.tag == "arb"
                && let Some((fee, sized)) = self.rival_bid(&p.bundle.legs, key)
            {
                out.push(Entry {
                    who: Who::Rival(k, sized),
                    priority_fee: fee,
                    position: position(fee),
                    tie: draw(self.cfg.seed, block, key ^ 4),
                });
            }
        }
        // By position, then the higher bid first, then a seeded draw: the same for every
        // parameter set that meets this opportunity (common random numbers).
        out.sort_by(|a, b| {
            a.position
                .cmp(&b.position)
                .then(b.priority_fee.cmp(&a.priority_fee))
                .then(a.tie.total_cmp(&b.tie))
        });
        out
    }

    /// Whether a rival goes after `route` this block, and its priority fee: a share of the profit
    /// it sees at the top of the block, drawn from (seed, block, route).
    fn rival_bid(&self, route: &[Leg], key: u64) -> Option<(u128, Sized)> {
        let c = &self.cfg.competition;
        let block = self.market.block.number;
        if c.p_rival <= 0.0 || draw(self.cfg.seed, block, key ^ 1) >= c.p_rival {
            return None;
        }
        let share = c.rival_bid_share_min
            + (c.rival_bid_share_max - c.rival_bid_share_min) * draw(self.cfg.seed, block, key ^ 2);
        let sized = optimal_input(&self.market, route, RIVAL_CAP)?;
        let pools: Vec<usize> = route.iter().map(|l| l.pool).collect();
        let gas = bundle_gas(&self.cfg.env.gas, &self.market, &pools, sized.ticks_crossed);
        let (fee, _) = bid(
            &self.market,
            &self.cfg.env,
            route[0].token_in,
            gas,
            route.len(),
            sized.amount_out - sized.amount_in,
            share,
        )?;
        Some((fee, sized))
    }

    /// The rival's atomic bundle where it lands: sized for its own profit on the state there,
    /// executed only if that beats its gas. Returns whether it traded.
    fn rival(&mut self, route: &[Leg], priority_fee: u128, at_top: Sized) -> bool {
        let moved = route.iter().any(|l| self.touched[l.pool]);
        let sized = if moved {
            match optimal_input(&self.market, route, RIVAL_CAP) {
                Some(s) => s,
                None => return false,
            }
        } else {
            at_top
        };
        let pools: Vec<usize> = route.iter().map(|l| l.pool).collect();
        let gas = bundle_gas(&self.cfg.env.gas, &self.market, &pools, sized.ticks_crossed);
        let cost = cost_wei(
            &self.cfg.env.gas,
            self.market.block.base_fee,
            gas,
            priority_fee,
            route.len(),
        );
        let token = route[0].token_in;
        let Some(gas_cost) = self.value(U256::from(cost.total()), self.cfg.env.native, token)
        else {
            return false;
        };
        if sized.amount_out <= sized.amount_in + gas_cost {
            return false;
        }
        for &p in &pools {
            self.diverge(p);
        }
        let mut amount = sized.amount_in;
        for leg in route {
            let meta = &self.market.pools[leg.pool];
            let zfo = meta.token0 == leg.token_in;
            match self.market.states[leg.pool].swap_exact_in(meta, zfo, amount) {
                Ok(q) => amount = q.amount_out,
                // Quoted a moment ago on this very state: cannot fail.
                Err(_) => break,
            }
        }
        for &p in &pools {
            self.settle(p);
            self.touched[p] = true;
        }
        self.tally.rival_fills += 1;
        true
    }

    /// Quote value of everything held at reference prices (human units), and the part not held
    /// in the quote token.
    fn valuation(&mut self) -> (f64, f64) {
        let quote = self.cfg.env.quote;
        let mut total = U256::ZERO;
        let mut exposed = U256::ZERO;
        let mut unpriced = None;
        for (&t, &b) in &self.balances {
            match self.value(b, t, quote) {
                Some(v) => {
                    total += v;
                    if t != quote {
                        exposed += v;
                    }
                }
                None => unpriced = Some(t),
            }
        }
        if let Some(t) = unpriced {
            let sym = market_symbol(&self.market, t);
            let block = self.market.block.number;
            self.tally.error(|| {
                format!("block {block}: holdings of {sym} could not be priced in the quote token")
            });
        }
        let dec = self.quote_dec;
        let eq = to_human(total, dec) - to_human(self.unpaid_gas, dec);
        (eq, to_human(exposed, dec))
    }

    /// Equity after selling every position back into the quote token in its best pool, with exact
    /// math on the state as we left it, paying the swap's gas at the base fee.
    fn close_out(&mut self) -> f64 {
        let quote = self.cfg.env.quote;
        let mut total = self.balances.get(&quote).copied().unwrap_or(U256::ZERO);
        let mut cost = U256::ZERO;
        let held: Vec<(Address, U256)> = self
            .balances
            .iter()
            .filter(|(t, b)| **t != quote && !b.is_zero())
            .map(|(t, b)| (*t, *b))
            .collect();
        for (t, b) in held {
            let best = (0..self.market.pools.len())
                .filter(|&i| self.market.pools[i].has_tokens(t, quote))
                .filter_map(|i| self.market.quote(i, t, b).map(|q| (q, i)))
                .max_by_key(|(q, i)| (q.amount_out, std::cmp::Reverse(*i)));
            let Some((q, pool)) = best else {
                let sym = market_symbol(&self.market, t);
                self.tally.error(|| {
                    format!("the position in {sym} could not be closed: no pool quotes it")
                });
                continue;
            };
            let gas = bundle_gas(&self.cfg.env.gas, &self.market, &[pool], q.ticks_crossed);
            let fee = cost_wei(&self.cfg.env.gas, self.market.block.base_fee, gas, 0, 1);
            match self.value(U256::from(fee.total()), self.cfg.env.native, quote) {
                Some(g) => cost += g,
                None => self.tally.error(|| {
                    "the gas of closing a position could not be priced in the quote token".into()
                }),
            }
            total += q.amount_out;
        }
        let dec = self.quote_dec;
        to_human(total, dec) - to_human(cost, dec) - to_human(self.unpaid_gas, dec)
    }

    fn record(&mut self, t: TradeRecord) {
        if let Some(trades) = self.trades.as_mut() {
            trades.push(t);
        }
    }

    /// Our bundle where it lands: each leg through the exact pool math on the state there; it
    /// reverts (gas paid) if a pool cannot fill or the output is below its minimum.
    fn execute(&mut self, p: &Pending, lost: bool, queue_position: u32) -> Fill {
        let b = &p.bundle;
        let quote = self.cfg.env.quote;
        let quote_dec = self.quote_dec;
        let token_in = b.token_in();
        let token_out = last_token_out(&self.market, b);
        let block = self.market.block;
        let held = self.balances.get(&token_in).copied().unwrap_or(U256::ZERO);
        let recording = self.trades.is_some();
        let symbols = recording.then(|| {
            (
                market_symbol(&self.market, token_in),
                market_symbol(&self.market, token_out),
            )
        });
        let record = |status,
                      out: U256,
                      gas: u64,
                      (l2, l1, operator): (u128, u128, u128),
                      gas_q,
                      realized| {
            symbols.as_ref().map(|(sym_in, sym_out)| TradeRecord {
                decided_block: p.decided,
                included_block: block.number,
                tag: b.tag.to_owned(),
                status,
                lost_to_competitor: lost,
                queue_position,
                token_in: sym_in.clone(),
                token_out: sym_out.clone(),
                amount_in: b.amount_in.to_string(),
                amount_out: out.to_string(),
                expected_out: b.expected_out.to_string(),
                gas_used: gas,
                l2_fee_wei: l2.to_string(),
                l1_fee_wei: l1.to_string(),
                operator_fee_wei: operator.to_string(),
                gas_quote: to_human(gas_q, quote_dec),
                realized_pnl_quote: realized,
            })
        };
        let fill = |status, amount_out| Fill {
            bundle: b.clone(),
            status,
            included_block: block.number,
            amount_out,
            token_out,
        };
        if b.amount_in.is_zero() || held < b.amount_in {
            self.tally.rejected += 1;
            if let Some(t) = record(
                FillStatus::Rejected,
                U256::ZERO,
                0,
                (0, 0, 0),
                U256::ZERO,
                None,
            ) {
                self.record(t);
            }
            return fill(FillStatus::Rejected, U256::ZERO);
        }
        if lost {
            self.tally.lost += 1;
        }
        let pools: Vec<usize> = b.legs.iter().map(|l| l.pool).collect();
        let saved: Vec<_> = pools
            .iter()
            .map(|&i| self.market.states[i].clone())
            .collect();
        for &i in &pools {
            self.diverge(i);
        }
        let (ok, out, ticks) = match run_legs(&mut self.market, b) {
            Some((out, ticks)) if out >= b.min_amount_out => (true, out, ticks),
            Some((_, ticks)) => (false, U256::ZERO, ticks),
            None => (false, U256::ZERO, 0),
        };
        if !ok {
            for (&i, s) in pools.iter().zip(saved) {
                self.market.states[i] = s;
            }
        }
        for &i in &pools {
            self.settle(i);
            self.touched[i] = true;
        }
        let full_gas = bundle_gas(&self.cfg.env.gas, &self.market, &pools, ticks);
        let gas = if ok {
            full_gas
        } else {
            (full_gas as f64 * self.cfg.env.gas.revert_fraction) as u64
        };
        let cost = cost_wei(
            &self.cfg.env.gas,
            block.base_fee,
            gas,
            b.priority_fee,
            b.legs.len(),
        );
        let fees = (cost.l2_wei, cost.l1_wei, cost.operator_wei);
        let gas_q = match self.value(U256::from(cost.total()), self.cfg.env.native, quote) {
            Some(g) => g,
            None => {
                self.tally.error(|| {
                    format!(
                        "block {}: gas could not be priced in the quote token (no pool prices \
                         the native token in it); the bundle was charged no gas",
                        block.number
                    )
                });
                U256::ZERO
            }
        };
        self.tally.gas_quote += gas_q;
        if !ok {
            self.pay_gas(gas_q);
            self.tally.reverted += 1;
            self.tally.realizations += 1;
            let realized = Some(-to_human(gas_q, quote_dec));
            if let Some(t) = record(FillStatus::Reverted, U256::ZERO, gas, fees, gas_q, realized) {
                self.record(t);
            }
            return fill(FillStatus::Reverted, U256::ZERO);
        }
        self.tally.filled += 1;
        *self.balances.entry(token_in).or_default() -= b.amount_in;
        *self.balances.entry(token_out).or_default() += out;
        // Gas is charged after the swap's own transfers: the swap spends tokens the executor
        // holds, gas is paid by the sender, so a swap of the whole quote balance still fills.
        self.pay_gas(gas_q);
        self.tally.traded_quote += if token_in == quote {
            b.amount_in
        } else if token_out == quote {
            out
        } else {
            self.value(b.amount_in, token_in, quote).unwrap_or_default()
        };
        let realized = if token_in == quote && token_out == quote {
            Some(signed_human(out, b.amount_in + gas_q, quote_dec))
        } else if token_in == quote {
            *self.basis.entry(token_out).or_default() += b.amount_in + gas_q;
            None
        } else if token_out == quote {
            let bs = self.basis.entry(token_in).or_default();
            let sold = dexlab_amm::full_math::mul_div(*bs, b.amount_in, held.max(U256::from(1)))
                .unwrap_or(*bs);
            *bs -= sold.min(*bs);
            Some(signed_human(out, sold + gas_q, quote_dec))
        } else {
            None
        };
        if let Some(r) = realized {
            self.tally.realizations += 1;
            if r > 0.0 {
                self.tally.wins += 1;
            }
        }
        if let Some(t) = record(FillStatus::Filled, out, gas, fees, gas_q, realized) {
            self.record(t);
        }
        fill(FillStatus::Filled, out)
    }

    /// Gas comes out of the quote balance; whatever it cannot cover is carried as a debt.
    fn pay_gas(&mut self, gas_q: U256) {
        let qb = self.balances.entry(self.cfg.env.quote).or_default();
        if *qb >= gas_q {
            *qb -= gas_q;
        } else {
            self.unpaid_gas += gas_q - *qb;
            *qb = U256::ZERO;
        }
    }
}

/// A rival is not limited by our balance: it sizes on the pools alone.
const RIVAL_CAP: U256 = U256::from_limbs([u64::MAX, u64::MAX, 0, 0]);

/// The route's identity for the competition draws, so every parameter set that sends the same
/// route in the same block meets the same rival.
fn route_key(legs: &[Leg]) -> u64 {
    legs.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, l| {
        let a = l.token_in.0.0;
        let word = u64::from_le_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]);
        (h ^ l.pool as u64 ^ word).wrapping_mul(0x0000_0100_0000_01B3)
    })
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

/// A uniform draw in [0, 1) from (seed, block, k): the same for every parameter set, so two
/// strategies meeting the same opportunity face the same competitor (common random numbers).
fn draw(seed: u64, block: u64, k: u64) -> f64 {
    let mut x =
        seed ^ block.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k.wrapping_mul(0xD1B5_4A32_D192_ED03);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn signed_human(a: U256, b: U256, dec: u8) -> f64 {
    if a >= b {
        to_human(a - b, dec)
    } else {
        -to_human(b - a, dec)
    }
}

fn market_symbol(market: &Market, a: Address) -> String {
    market
        .symbol(a)
        .map_or_else(|| format!("{a:#x}"), str::to_owned)
}

fn last_token_out(market: &Market, b: &Bundle) -> Address {
    let leg = b.legs.last().expect("a bundle has at least one leg");
    let m = &market.pools[leg.pool];
    if m.token0 == leg.token_in {
        m.token1
    } else {
        m.token0
    }
}

/// Swaps through every leg on the market's state; `None` if a pool cannot fill.
fn run_legs(market: &mut Market, b: &Bundle) -> Option<(U256, u32)> {
    let mut amount = b.amount_in;
    let mut ticks = 0;
    for leg in &b.legs {
        let meta = &market.pools[leg.pool];
        let zfo = meta.token0 == leg.token_in;
        let q = market.states[leg.pool]
            .swap_exact_in(meta, zfo, amount)
            .ok()?;
        amount = q.amount_out;
        ticks += q.ticks_crossed;
        if amount.is_zero() {
            return None;
        }
    }
    Some((amount, ticks))
}
