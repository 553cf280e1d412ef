//! The driver: one loop for backtest, paper and live. Each block, the executor applies the block's
//! pool events to the market together with our bundles that land in it; then the strategy decides
//! on the block's final state, and what it sends is reserved in the ledger and put in flight.
//!
//! The block source is whatever calls [`Driver::step`]: a tape replay in a backtest
//! ([`crate::backtest`]), the node feed in paper and live trading. The executor is the seam
//! between simulated fills ([`crate::sim::SimExecutor`]) and the chain.
//!
//! A bundle's life: sent with an id (its input reserved), then exactly one outcome, reported back
//! to the strategy: filled, reverted (gas paid), rejected (never sent: over the available
//! balance), or expired (not included by its deadline block; dropped by the node counts as
//! expired too). No strategy waits forever on a fill that never comes.

use alloy_primitives::{Address, U256};
use dexlab_strategy::gas::{TxCost, bundle_gas, convert_with, cost_at};
use dexlab_strategy::market::{BlockInfo, Market, PoolEvent, PoolMeta, PoolState, to_human};
use dexlab_strategy::{
    Action, Bundle, Context, Fill, FillStatus, ReplayClock, Strategy, TradingEnv,
};
use serde::{Deserialize, Serialize};

use crate::ledger::{Ledger, last_token_out};
use crate::risk::{BundleView, RiskEvent, RiskManager};

/// A bundle on its way: sent at block `decided`, due at `earliest`, void after `deadline`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// Unique within a run (a session keeps counting across restarts).
    pub id: u64,
    pub decided: u64,
    /// The first block it can land in (the decision block plus the execution latency).
    pub earliest: u64,
    /// The last block it may land in; after it, the bundle has expired.
    pub deadline: u64,
    pub bundle: Bundle,
    /// The deployment that decided it (`name@vN`), in a session running one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
}

/// What became of a bundle, as the executor saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub status: FillStatus,
    pub included_block: u64,
    pub amount_out: U256,
    pub token_out: Address,
    /// A rival took the same route earlier in the block.
    pub lost_to_competitor: bool,
    /// Events of the inclusion block that ran before the bundle.
    pub queue_position: u32,
    pub gas_used: u64,
    pub cost: TxCost,
}

/// Carries bundles out: applies a block's pool events and our bundles due in it to the market, in
/// the order the chain would (simulated) or did (on chain), and reports each pool update and each
/// bundle outcome to `obs`.
pub trait Executor {
    fn run_block(
        &mut self,
        market: &mut Market,
        events: &[PoolEvent],
        inflight: &[InFlight],
        obs: &mut Observer<'_>,
    );

    /// The state a pool is marked at: one our own trades did not move (in a simulation,
    /// history's).
    fn reference<'m>(&'m self, market: &'m Market, pool: usize) -> &'m PoolState;

    /// Whether this executor reports bundles that were never included (the chain's, which
    /// knows only when the sender's cancellation or the node says so); otherwise the driver
    /// expires a bundle past its deadline block itself, at no gas.
    fn settles_expiry(&self) -> bool {
        false
    }
}

/// What became of a bundle, as a session records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    pub id: u64,
    pub status: FillStatus,
    /// The block it landed in (or was refused or expired in).
    pub included_block: u64,
    pub amount_out: U256,
}

/// One block's decisions and outcomes, kept when a run records them (paper and live sessions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepLog {
    pub sent: Vec<InFlight>,
    pub outcomes: Vec<OutcomeRecord>,
    /// The risk manager's refusals, halts and clears of the block.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub risk: Vec<RiskEvent>,
}

impl StepLog {
    fn outcome(&mut self, id: u64, fill: &Fill) {
        self.outcomes.push(OutcomeRecord {
            id,
            status: fill.status,
            included_block: fill.included_block,
            amount_out: fill.amount_out,
        });
    }
}

/// Hears what the executor does in a block: tells the strategy of pool updates, and books
/// outcomes in the ledger before telling the strategy of its fill.
pub struct Observer<'a> {
    strategy: &'a mut dyn Strategy,
    ledger: &'a mut Ledger,
    /// Whether the strategy is told of pool updates (not in blocks before its warm-up).
    feed: bool,
    resolved: Vec<u64>,
    log: Option<&'a mut StepLog>,
    risk: Option<&'a mut RiskManager>,
}

impl Observer<'_> {
    #[inline]
    pub fn pool_updated(&mut self, market: &Market, pool: usize) {
        if self.feed {
            self.strategy.on_pool_update(market, pool);
        }
    }

    /// A bundle's outcome; `value` prices amounts at reference prices (gas in the quote token).
    pub fn outcome(
        &mut self,
        sent: &InFlight,
        o: &Outcome,
        market: &Market,
        value: &dyn Fn(U256, Address, Address) -> Option<U256>,
    ) {
        let fill = self.ledger.settle(sent, o, market, value);
        if let Some(r) = self.risk.as_deref_mut() {
            r.outcome(fill.status);
        }
        self.resolved.push(sent.id);
        if let Some(log) = self.log.as_deref_mut() {
            log.outcome(sent.id, &fill);
        }
        self.strategy.on_fill(&fill);
    }
}

/// The execution settings that are chain facts, not strategy parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// Blocks from decision to inclusion (at least 1: a transaction lands in a later block).
    pub latency_blocks: u64,
    /// Blocks after the first possible one that a bundle stays valid (0: only that block).
    pub deadline_blocks: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            latency_blocks: 1,
            deadline_blocks: 0,
        }
    }
}

/// The market, the executor, the books and the bundles in flight of one run.
pub struct Driver<'c, E> {
    pub env: &'c TradingEnv,
    pub timing: Timing,
    pub market: Market,
    pub exec: E,
    pub ledger: Ledger,
    pub inflight: Vec<InFlight>,
    /// When set, each step's decisions and outcomes are logged here (taken by the caller).
    pub log: Option<StepLog>,
    /// Limits between the strategy and the executor, when the run has them.
    pub risk: Option<RiskManager>,
    /// Stamped on every bundle sent: the deployment deciding (a session's).
    pub label: Option<String>,
    next_id: u64,
    actions: Vec<Action>,
}

impl<'c, E: Executor> Driver<'c, E> {
    pub fn new(
        env: &'c TradingEnv,
        timing: Timing,
        market: Market,
        exec: E,
        ledger: Ledger,
    ) -> Self {
        Self {
            env,
            timing,
            market,
            exec,
            ledger,
            inflight: Vec::new(),
            log: None,
            risk: None,
            label: None,
            next_id: 0,
            actions: Vec::new(),
        }
    }

    /// Continues bundle ids after `last` (a resumed session).
    pub fn ids_after(&mut self, last: u64) {
        self.next_id = self.next_id.max(last + 1);
    }

    /// A block before trading starts: its events are applied and, when `watch`, the strategy
    /// sees them and decides with no balances; what it sends is refused unsent and not counted.
    pub fn warm(
        &mut self,
        block: BlockInfo,
        events: &[PoolEvent],
        strategy: &mut dyn Strategy,
        watch: bool,
    ) {
        self.market.block = block;
        let mut obs = Observer {
            strategy: &mut *strategy,
            ledger: &mut self.ledger,
            feed: watch,
            resolved: Vec::new(),
            log: None,
            risk: None,
        };
        self.exec.run_block(&mut self.market, events, &[], &mut obs);
        if !watch {
            return;
        }
        let clock = ReplayClock::at(&block);
        let none = |_: Address| U256::ZERO;
        let (exec, market) = (&self.exec, &self.market);
        let mark = |i: usize| exec.reference(market, i).mid_price(&market.pools[i]);
        let ctx = Context {
            clock: &clock,
            balances: &none,
            env: self.env,
            mark: &mark,
        };
        strategy.on_block(market, &ctx, &mut self.actions);
        for a in self.actions.drain(..) {
            let Action::Submit(bundle) = a;
            let token_out = last_token_out(market, &bundle);
            strategy.on_fill(&Fill {
                bundle,
                status: FillStatus::Rejected,
                included_block: block.number,
                amount_out: U256::ZERO,
                token_out,
            });
        }
    }

    /// One block: its events and our bundles due in it, then the strategy's decision on the
    /// block's final state. Returns how many bundles were sent (the last ones in
    /// [`Driver::inflight`]).
    pub fn step(
        &mut self,
        block: BlockInfo,
        events: &[PoolEvent],
        strategy: &mut dyn Strategy,
    ) -> usize {
        self.market.block = block;
        let mut obs = Observer {
            strategy: &mut *strategy,
            ledger: &mut self.ledger,
            feed: true,
            resolved: Vec::new(),
            log: self.log.as_mut(),
            risk: self.risk.as_mut(),
        };
        self.exec
            .run_block(&mut self.market, events, &self.inflight, &mut obs);
        let Observer { resolved, .. } = obs;
        if !resolved.is_empty() {
            self.inflight.retain(|p| !resolved.contains(&p.id));
        }
        // Past their deadline and never included: expired, reservation released, no gas.
        if !self.exec.settles_expiry() && self.inflight.iter().any(|p| p.deadline <= block.number) {
            let (gone, keep): (Vec<_>, Vec<_>) = self
                .inflight
                .drain(..)
                .partition(|p| p.deadline <= block.number);
            self.inflight = keep;
            for p in gone {
                let o = Outcome {
                    status: FillStatus::Expired,
                    included_block: block.number,
                    amount_out: U256::ZERO,
                    token_out: last_token_out(&self.market, &p.bundle),
                    lost_to_competitor: false,
                    queue_position: 0,
                    gas_used: 0,
                    cost: TxCost::default(),
                };
                let fill = self.ledger.settle(&p, &o, &self.market, &|a, _, _| Some(a));
                if let Some(log) = self.log.as_mut() {
                    log.outcome(p.id, &fill);
                }
                strategy.on_fill(&fill);
            }
        }
        if let Some(needs) = self.risk.as_ref().map(RiskManager::needs_equity) {
            let equity = if needs { self.valuation().0 } else { 0.0 };
            if let Some(r) = self.risk.as_mut() {
                r.begin_block(block.timestamp, equity);
            }
        }
        // The decision, on what is not committed to bundles in flight.
        let clock = ReplayClock::at(&block);
        {
            let (exec, market, ledger) = (&self.exec, &self.market, &self.ledger);
            let bal = |t: Address| ledger.available(t);
            let mark = |i: usize| exec.reference(market, i).mid_price(&market.pools[i]);
            let ctx = Context {
                clock: &clock,
                balances: &bal,
                env: self.env,
                mark: &mark,
            };
            strategy.on_block(market, &ctx, &mut self.actions);
        }
        let mut sent = 0;
        let latency = self.timing.latency_blocks.max(1);
        for a in std::mem::take(&mut self.actions) {
            let Action::Submit(bundle) = a;
            self.ledger.tally.submitted += 1;
            let id = self.next_id;
            self.next_id += 1;
            let earliest = block.number + latency;
            let p = InFlight {
                id,
                decided: block.number,
                earliest,
                deadline: earliest + self.timing.deadline_blocks,
                bundle,
                deployment: self.label.clone(),
            };
            if let Some(log) = self.log.as_mut() {
                log.sent.push(p.clone());
            }
            let admitted = match self.risk.is_some() {
                false => true,
                true => {
                    let view = self.risk_view(&p);
                    self.risk.as_mut().is_some_and(|r| r.admit(&view))
                }
            };
            if admitted && self.ledger.reserve(&p.bundle) {
                self.inflight.push(p);
                sent += 1;
            } else {
                let fill = self.ledger.rejected(&p, &self.market);
                if let Some(log) = self.log.as_mut() {
                    log.outcome(p.id, &fill);
                }
                strategy.on_fill(&fill);
            }
        }
        if let (Some(r), Some(log)) = (self.risk.as_mut(), self.log.as_mut()) {
            log.risk.append(&mut r.events);
        } else if let Some(r) = self.risk.as_mut() {
            r.events.clear();
        }
        sent
    }

    /// A bundle as the risk limits see it, valued at reference prices.
    fn risk_view(&self, p: &InFlight) -> BundleView {
        let quote = self.env.quote;
        let dec = self.ledger.quote_decimals;
        let b = &p.bundle;
        let human = |v: Option<U256>| v.map(|v| to_human(v, dec));
        let token_out = last_token_out(&self.market, b);
        let notional_quote = human(self.value(b.amount_in, b.token_in(), quote));
        // What it would hold of its output: what it holds, plus the larger of the bundle's
        // expected output and its input's worth.
        let exposure_after_quote = if token_out == quote {
            Some(0.0)
        } else {
            let held = self
                .ledger
                .balances
                .get(&token_out)
                .copied()
                .unwrap_or_default();
            let held_q = human(self.value(held, token_out, quote));
            let expected_q = human(self.value(b.expected_out, token_out, quote));
            match (held_q, expected_q, notional_quote) {
                (Some(h), Some(e), Some(n)) => Some(h + e.max(n)),
                _ => None,
            }
        };
        BundleView {
            id: p.id,
            notional_quote,
            exposure_after_quote,
            gas_price_wei: self
                .env
                .gas
                .base_fee_wei(self.market.block.base_fee)
                .saturating_add(b.priority_fee),
        }
    }

    /// Each leg's output of `bundle` by exact pool math on the reference state (the chain's own,
    /// without our simulated trades): what a node asked to simulate the bundle now must answer.
    /// `None` when the bundle would revert there.
    pub fn reference_legs(&self, bundle: &Bundle) -> Option<Vec<U256>> {
        leg_outputs(
            &self.market.pools,
            |i| self.exec.reference(&self.market, i),
            bundle,
        )
    }

    /// `amount` of `from` in `to` at reference mid prices.
    pub fn value(&self, amount: U256, from: Address, to: Address) -> Option<U256> {
        convert_with(
            &self.market.pools,
            |i| self.exec.reference(&self.market, i),
            amount,
            from,
            to,
        )
    }

    /// Quote value of everything held at reference prices (human units), and the part not held
    /// in the quote token.
    pub fn valuation(&mut self) -> (f64, f64) {
        let (exec, market) = (&self.exec, &self.market);
        let value = |a, f, t| convert_with(&market.pools, |i| exec.reference(market, i), a, f, t);
        self.ledger.valuation(market, &value)
    }

    /// Equity after selling every position back into the quote token in its best pool, with exact
    /// math on the state as we left it, paying the swap's gas at the base fee.
    pub fn close_out(&mut self) -> f64 {
        let quote = self.env.quote;
        let ledger = &self.ledger;
        let mut total = ledger.balances.get(&quote).copied().unwrap_or(U256::ZERO);
        let mut cost = U256::ZERO;
        let held: Vec<(Address, U256)> = ledger
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
                let sym = crate::ledger::market_symbol(&self.market, t);
                self.ledger.tally.error(|| {
                    format!("the position in {sym} could not be closed: no pool quotes it")
                });
                continue;
            };
            let gas = bundle_gas(&self.env.gas, &self.market, &[pool], q.ticks_crossed);
            let fee = cost_at(&self.env.gas, &self.market.block, gas, 0, 1);
            match self.value(U256::from(fee.total()), self.env.native, quote) {
                Some(g) => cost += g,
                None => self.ledger.tally.error(|| {
                    "the gas of closing a position could not be priced in the quote token".into()
                }),
            }
            total += q.amount_out;
        }
        let dec = self.ledger.quote_decimals;
        to_human(total, dec) - to_human(cost, dec) - to_human(self.ledger.unpaid_gas, dec)
    }
}

/// Each leg's output of `bundle` by exact pool math on the states `state` gives, as the executor
/// contract would produce them; `None` when the bundle would revert (a pool cannot fill, or a leg
/// gives nothing). A route that visits a pool twice trades each time on the state the previous
/// legs left.
pub fn leg_outputs<'a>(
    pools: &[PoolMeta],
    state: impl Fn(usize) -> &'a PoolState,
    bundle: &Bundle,
) -> Option<Vec<U256>> {
    run_route(pools, state, bundle).map(|r| r.outputs)
}

/// A bundle through exact pool math (see [`leg_outputs`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RouteRun {
    /// Each leg's output; the last is the bundle's.
    pub outputs: Vec<U256>,
    /// Initialized ticks the V3 legs crossed.
    pub ticks_crossed: u32,
    /// The new state of each pool the route moved.
    pub moved: Vec<(usize, PoolState)>,
}

/// [`leg_outputs`] with the ticks crossed and the states the route leaves.
pub fn run_route<'a>(
    pools: &[PoolMeta],
    state: impl Fn(usize) -> &'a PoolState,
    bundle: &Bundle,
) -> Option<RouteRun> {
    let mut moved: Vec<(usize, PoolState)> = Vec::new();
    let mut amount = bundle.amount_in;
    let mut outputs = Vec::with_capacity(bundle.legs.len());
    let mut ticks_crossed = 0;
    for leg in &bundle.legs {
        let meta = pools.get(leg.pool)?;
        let k = match moved.iter().position(|(i, _)| *i == leg.pool) {
            Some(k) => k,
            None => {
                moved.push((leg.pool, state(leg.pool).clone()));
                moved.len() - 1
            }
        };
        let q = moved[k]
            .1
            .swap_exact_in(meta, meta.token0 == leg.token_in, amount)
            .ok()?;
        if q.amount_out.is_zero() {
            return None;
        }
        amount = q.amount_out;
        ticks_crossed += q.ticks_crossed;
        outputs.push(amount);
    }
    Some(RouteRun {
        outputs,
        ticks_crossed,
        moved,
    })
}
