//! The simulated executor: fills bundles with exact pool math where the chain would land them,
//! races a rival for every arbitrage, and replays history's flows on pools our trades have moved.
//! The execution model is documented in [`crate::backtest`]; paper trading uses the same
//! executor at the node's head.

use alloy_primitives::{Address, U256};
use dexlab_strategy::arb::{Sized, bid, optimal_input};
use dexlab_strategy::gas::{bundle_gas, convert_with, cost_at};
use dexlab_strategy::market::{
    Market, PoolEvent, PoolState, Update, apply, apply_state, replay_flow,
};
use dexlab_strategy::{BundleTag, FillStatus, Leg};

use crate::backtest::{ExecConfig, QueueAssumption};
use crate::driver::{Executor, InFlight, Observer, Outcome};
use crate::ledger::{Tally, last_token_out};

/// What the simulation adds to the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SimStats {
    /// Historical events re-executed on pools our trades had moved.
    pub diverged_events: u64,
    /// Of those, swaps that could not execute on our state (their sender would have reverted).
    pub failed_flows: u64,
    /// Rival bundles that executed.
    pub rival_fills: u64,
}

impl SimStats {
    pub fn add_to(&self, t: &mut Tally) {
        t.diverged_events += self.diverged_events;
        t.failed_flows += self.failed_flows;
        t.rival_fills += self.rival_fills;
    }
}

/// The simulated chain of one run: history's own state of the pools our trades moved, and where
/// each bundle lands.
pub struct SimExecutor<'c> {
    cfg: &'c ExecConfig,
    /// History's state of each pool our trades (or a rival's) have moved; `None` while the pool
    /// is as history has it.
    hist: Vec<Option<PoolState>>,
    /// Whether the data records each event's priority fee.
    fees_known: bool,
    /// Pools an event or a fill changed since the top of the block (kept in blocks with bundles
    /// due, so a rival sized at the top need not size again where nothing moved).
    touched: Vec<bool>,
    pub stats: SimStats,
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

impl Executor for SimExecutor<'_> {
    fn run_block(
        &mut self,
        market: &mut Market,
        events: &[PoolEvent],
        inflight: &[InFlight],
        obs: &mut Observer<'_>,
    ) {
        let number = market.block.number;
        let mut next = 0;
        if inflight.iter().any(|p| p.earliest <= number) {
            let due: Vec<&InFlight> = inflight.iter().filter(|p| p.earliest <= number).collect();
            self.touched.fill(false);
            let queue = self.queue(market, &due, events);
            let mut lost = vec![false; due.len()];
            for entry in queue {
                while next < entry.position {
                    self.event(market, &events[next]);
                    obs.pool_updated(market, events[next].pool as usize);
                    next += 1;
                }
                match entry.who {
                    Who::Ours(k) => {
                        let o = self.execute(market, due[k], lost[k], next as u32);
                        for leg in &due[k].bundle.legs {
                            obs.pool_updated(market, leg.pool);
                        }
                        let value = |a, f, t| self.value(market, a, f, t);
                        obs.outcome(due[k], &o, market, &value);
                    }
                    Who::Rival(k, sized) => {
                        if self.rival(market, &due[k].bundle.legs, entry.priority_fee, sized) {
                            lost[k] = true;
                            for leg in &due[k].bundle.legs {
                                obs.pool_updated(market, leg.pool);
                            }
                        }
                    }
                }
            }
        }
        for e in &events[next..] {
            self.event(market, e);
            obs.pool_updated(market, e.pool as usize);
        }
    }

    fn reference<'m>(&'m self, market: &'m Market, pool: usize) -> &'m PoolState {
        self.hist[pool].as_ref().unwrap_or(&market.states[pool])
    }
}

impl<'c> SimExecutor<'c> {
    /// A simulation of a market of `pools` pools; `fees_known` when the data records each
    /// event's priority fee.
    pub fn new(cfg: &'c ExecConfig, pools: usize, fees_known: bool) -> Self {
        Self {
            cfg,
            hist: vec![None; pools],
            fees_known,
            touched: vec![false; pools],
            stats: SimStats::default(),
        }
    }

    /// One historical event. On a pool as history has it, the event's recorded state; on a pool
    /// we moved, the event's flow re-executed on our state, until the two coincide again.
    #[inline]
    fn event(&mut self, market: &mut Market, e: &PoolEvent) {
        let i = e.pool as usize;
        self.touched[i] = true;
        let Some(h) = &mut self.hist[i] else {
            apply(market, e);
            return;
        };
        self.stats.diverged_events += 1;
        let meta = &market.pools[i];
        let before = match (&e.update, &*h) {
            (Update::Reserves { .. }, PoolState::V2 { reserve0, reserve1 }) => {
                Some((*reserve0, *reserve1))
            }
            (Update::Reserves { .. }, PoolState::Solidly(p)) => Some((p.reserve0, p.reserve1)),
            _ => None,
        };
        apply_state(meta, h, &e.update);
        let state = &mut market.states[i];
        if !replay_flow(meta, state, before, h, &e.update) {
            self.stats.failed_flows += 1;
        }
        if *state == *h {
            self.hist[i] = None;
        }
    }

    /// Records history's state of `pool` before our first change to it.
    fn diverge(&mut self, market: &Market, pool: usize) {
        if self.hist[pool].is_none() {
            self.hist[pool] = Some(market.states[pool].clone());
        }
    }

    /// Forgets history's copy of `pool` when our state is history's again.
    fn settle(&mut self, market: &Market, pool: usize) {
        if self.hist[pool].as_ref() == Some(&market.states[pool]) {
            self.hist[pool] = None;
        }
    }

    /// `amount` of `from` in `to` at reference mid prices.
    fn value(&self, market: &Market, amount: U256, from: Address, to: Address) -> Option<U256> {
        convert_with(
            &market.pools,
            |i| self.reference(market, i),
            amount,
            from,
            to,
        )
    }

    /// The order in which `due` bundles and their rivals land among `events`.
    fn queue(&self, market: &Market, due: &[&InFlight], events: &[PoolEvent]) -> Vec<Entry> {
        let block = market.block.number;
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
            if p.bundle.tag == BundleTag::Arb
                && let Some((fee, sized)) = self.rival_bid(market, &p.bundle.legs, key)
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
    fn rival_bid(&self, market: &Market, route: &[Leg], key: u64) -> Option<(u128, Sized)> {
        let c = &self.cfg.competition;
        let block = market.block.number;
        if c.p_rival <= 0.0 || draw(self.cfg.seed, block, key ^ 1) >= c.p_rival {
            return None;
        }
        let share = c.rival_bid_share_min
            + (c.rival_bid_share_max - c.rival_bid_share_min) * draw(self.cfg.seed, block, key ^ 2);
        let sized = optimal_input(market, route, RIVAL_CAP)?;
        let pools: Vec<usize> = route.iter().map(|l| l.pool).collect();
        let gas = bundle_gas(&self.cfg.env.gas, market, &pools, sized.ticks_crossed);
        let (fee, _) = bid(
            market,
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
    fn rival(
        &mut self,
        market: &mut Market,
        route: &[Leg],
        priority_fee: u128,
        at_top: Sized,
    ) -> bool {
        let moved = route.iter().any(|l| self.touched[l.pool]);
        let sized = if moved {
            match optimal_input(market, route, RIVAL_CAP) {
                Some(s) => s,
                None => return false,
            }
        } else {
            at_top
        };
        let pools: Vec<usize> = route.iter().map(|l| l.pool).collect();
        let gas = bundle_gas(&self.cfg.env.gas, market, &pools, sized.ticks_crossed);
        let cost = cost_at(
            &self.cfg.env.gas,
            &market.block,
            gas,
            priority_fee,
            route.len(),
        );
        let token = route[0].token_in;
        let Some(gas_cost) =
            self.value(market, U256::from(cost.total()), self.cfg.env.native, token)
        else {
            return false;
        };
        if sized.amount_out <= sized.amount_in + gas_cost {
            return false;
        }
        for &p in &pools {
            self.diverge(market, p);
        }
        let mut amount = sized.amount_in;
        for leg in route {
            let meta = &market.pools[leg.pool];
            let zfo = meta.token0 == leg.token_in;
            match market.states[leg.pool].swap_exact_in(meta, zfo, amount) {
                Ok(q) => amount = q.amount_out,
                // Quoted a moment ago on this very state: cannot fail.
                Err(_) => break,
            }
        }
        for &p in &pools {
            self.settle(market, p);
            self.touched[p] = true;
        }
        self.stats.rival_fills += 1;
        true
    }

    /// Our bundle where it lands: each leg through the exact pool math on the state there; it
    /// reverts (gas paid) if a pool cannot fill or the output is below its minimum.
    fn execute(
        &mut self,
        market: &mut Market,
        p: &InFlight,
        lost: bool,
        queue_position: u32,
    ) -> Outcome {
        let b = &p.bundle;
        let token_out = last_token_out(market, b);
        let pools: Vec<usize> = b.legs.iter().map(|l| l.pool).collect();
        let saved: Vec<_> = pools.iter().map(|&i| market.states[i].clone()).collect();
        for &i in &pools {
            self.diverge(market, i);
        }
        let (ok, out, ticks) = match run_legs(market, b) {
            Some((out, ticks)) if out >= b.min_amount_out => (true, out, ticks),
            Some((_, ticks)) => (false, U256::ZERO, ticks),
            None => (false, U256::ZERO, 0),
        };
        if !ok {
            for (&i, s) in pools.iter().zip(saved) {
                market.states[i] = s;
            }
        }
        for &i in &pools {
            self.settle(market, i);
            self.touched[i] = true;
        }
        let full_gas = bundle_gas(&self.cfg.env.gas, market, &pools, ticks);
        let gas_used = if ok {
            full_gas
        } else {
            (full_gas as f64 * self.cfg.env.gas.revert_fraction) as u64
        };
        let cost = cost_at(
            &self.cfg.env.gas,
            &market.block,
            gas_used,
            b.priority_fee,
            b.legs.len(),
        );
        Outcome {
            status: if ok {
                FillStatus::Filled
            } else {
                FillStatus::Reverted
            },
            included_block: market.block.number,
            amount_out: out,
            token_out,
            lost_to_competitor: lost,
            queue_position,
            gas_used,
            cost,
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

/// Swaps through every leg on the market's state; `None` if a pool cannot fill.
fn run_legs(market: &mut Market, b: &dexlab_strategy::Bundle) -> Option<(U256, u32)> {
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
