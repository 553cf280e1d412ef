//! The backtester: replays a tape through a strategy and fills its bundles the way the chain would.
//!
//! Execution model, per bundle (all amounts integers):
//! - it is included at the top of the first block at or after `decision block + latency`, before
//!   that block's own events;
//! - an arbitrage may lose the race: with probability `p_lose / multiplier^bid_elasticity` (the
//!   multiplier is the bundle's total gas price over the base fee), a competitor runs the same route
//!   first and our bundle executes on the state it leaves;
//! - each leg fills through the exact pool math on the state at inclusion (LP fees included); if a
//!   pool cannot fill or the last output is below the bundle's minimum, the bundle reverts: the pool
//!   states are restored and `revert_fraction` of the gas is still paid;
//! - gas = gas used x (base fee + priority fee) plus the OP-stack L1 data fee, valued in the quote
//!   token at the native/quote mid price, and deducted from the quote balance;
//! - a bundle whose input exceeds the balance is rejected (not sent, no gas).
//!
//! Our fills move the pools; the next historical event on a pool overwrites its state, since the
//! chain's events carry absolute post-trade state (history does not react to our trades beyond
//! that). Same tape, strategy, parameters and config give bit-identical results.

use std::collections::BTreeMap;
use std::ops::Range;

use alloy_primitives::{Address, U256};
use dexlab_strategy::gas::{TxCost, bundle_gas, convert, cost_wei};
use dexlab_strategy::market::{Market, to_human};
use dexlab_strategy::{
    Action, Bundle, Context, Fill, FillStatus, ReplayClock, Strategy, TradingEnv,
};
use serde::{Deserialize, Serialize};

use crate::metrics::{Metrics, compute_metrics};
use crate::tape::{Tape, apply};

/// The competition model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Competition {
    /// Probability that another searcher takes an arbitrage first when we bid the base fee only.
    pub p_lose: f64,
    /// How fast a higher bid lowers that probability.
    pub bid_elasticity: f64,
}

impl Default for Competition {
    fn default() -> Self {
        Self {
            p_lose: 0.3,
            bid_elasticity: 1.0,
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
}

/// One bundle's accounting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TradeRecord {
    pub decided_block: u64,
    pub included_block: u64,
    pub tag: String,
    pub status: FillStatus,
    pub lost_to_competitor: bool,
    pub token_in: String,
    pub token_out: String,
    /// Exact raw amounts as decimal strings.
    pub amount_in: String,
    pub amount_out: String,
    pub expected_out: String,
    pub gas_used: u64,
    pub l2_fee_wei: String,
    pub l1_fee_wei: String,
    pub gas_quote: f64,
    /// Realised PnL in quote units when the trade closes a position (an arbitrage always does).
    pub realized_pnl_quote: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EquityPoint {
    pub block: u64,
    pub timestamp: u64,
    /// Quote-token value of all balances, human units.
    pub equity: f64,
}

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
}

/// Runs `strategy` over blocks `window` of `tape`, starting from `start` (the market after the
/// blocks before the window).
pub fn run(
    tape: &Tape,
    start: &Market,
    window: Range<usize>,
    strategy: &mut dyn Strategy,
    cfg: &ExecConfig,
    record: bool,
) -> BacktestResult {
    let mut market = start.clone();
    let quote = cfg.env.quote;
    let quote_dec = market.decimals(quote).unwrap_or(18);
    let mut balances: BTreeMap<Address, U256> = BTreeMap::new();
    balances.insert(quote, cfg.capital);
    let mut basis: BTreeMap<Address, U256> = BTreeMap::new();
    let mut unpaid_gas = U256::ZERO;
    let mut pending: Vec<Pending> = Vec::new();
    let mut actions = Vec::new();
    let mut tally = Tally::default();
    let mut trades = Vec::new();
    let mut equity = Vec::new();
    let mut returns_equity = Vec::with_capacity(cfg.periods + 1);
    let mut exposure_sum = 0.0;

    let window = window.start.min(tape.blocks.len())..window.end.min(tape.blocks.len());
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

    for bi in window.clone() {
        let block = tape.blocks[bi];
        market.block = block;
        let clock = ReplayClock {
            block: block.number,
            timestamp: block.timestamp,
        };
        // 1. Our bundles due in this block run first (they bid for the top of the block).
        if pending.iter().any(|p| p.include_at <= block.number) {
            let (due, rest): (Vec<_>, Vec<_>) = pending
                .drain(..)
                .partition(|p| p.include_at <= block.number);
            pending = rest;
            for (k, p) in due.into_iter().enumerate() {
                let out = execute(
                    &mut market,
                    &p,
                    k as u64,
                    cfg,
                    &mut balances,
                    &mut basis,
                    &mut unpaid_gas,
                    &mut tally,
                    quote_dec,
                    record.then_some(&mut trades),
                );
                for leg in &p.bundle.legs {
                    strategy.on_pool_update(&market, leg.pool);
                }
                strategy.on_fill(&out);
            }
        }
        // 2. The block's own events.
        for e in tape.events_of(bi) {
            apply(&mut market, e);
            strategy.on_pool_update(&market, e.pool as usize);
        }
        // 3. The strategy decides on the block's final state.
        let bal = |t: Address| balances.get(&t).copied().unwrap_or(U256::ZERO);
        let ctx = Context {
            clock: &clock,
            balances: &bal,
            env: &cfg.env,
        };
        strategy.on_block(&market, &ctx, &mut actions);
        for a in actions.drain(..) {
            let Action::Submit(bundle) = a;
            tally.submitted += 1;
            pending.push(Pending {
                include_at: block.number + bundle.latency.max(1),
                decided: block.number,
                bundle,
            });
        }
        // 4. Mark to market once per period (and at the last block).
        let t = time_of(bi);
        if t >= next_mark || bi + 1 == window.end {
            let (eq, exposed) = valuation(&market, &balances, unpaid_gas, quote, quote_dec);
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
    let (final_equity, _) = valuation(&market, &balances, unpaid_gas, quote, quote_dec);
    let usd_per_quote = usd_per_quote(&market, quote);
    let metrics = compute_metrics(
        initial_equity,
        final_equity,
        &returns_equity,
        exposure_sum,
        &tally,
        quote_dec,
        (t1 - t0).max(0.0),
        usd_per_quote,
    );
    BacktestResult {
        metrics,
        trades,
        equity,
    }
}

/// Quote-token value of everything held (human units), and the part not held in the quote token.
fn valuation(
    market: &Market,
    balances: &BTreeMap<Address, U256>,
    unpaid_gas: U256,
    quote: Address,
    quote_dec: u8,
) -> (f64, f64) {
    let mut total = U256::ZERO;
    let mut exposed = U256::ZERO;
    for (&t, &b) in balances {
        let v = convert(market, b, t, quote).unwrap_or(U256::ZERO);
        total += v;
        if t != quote {
            exposed += v;
        }
    }
    let eq = to_human(total, quote_dec) - to_human(unpaid_gas, quote_dec);
    (eq, to_human(exposed, quote_dec))
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

#[allow(clippy::too_many_arguments)]
fn execute(
    market: &mut Market,
    p: &Pending,
    k: u64,
    cfg: &ExecConfig,
    balances: &mut BTreeMap<Address, U256>,
    basis: &mut BTreeMap<Address, U256>,
    unpaid_gas: &mut U256,
    tally: &mut Tally,
    quote_dec: u8,
    trades: Option<&mut Vec<TradeRecord>>,
) -> Fill {
    let b = &p.bundle;
    let quote = cfg.env.quote;
    let token_in = b.token_in();
    let token_out = last_token_out(market, b);
    let block = market.block;
    let held = balances.get(&token_in).copied().unwrap_or(U256::ZERO);
    let mut trades = trades;
    let symbols = trades.is_some().then(|| {
        (
            market_symbol(market, token_in),
            market_symbol(market, token_out),
        )
    });
    let mut record = |status,
                      lost,
                      out: U256,
                      gas: u64,
                      l2: u128,
                      l1: u128,
                      gas_q: U256,
                      realized: Option<f64>| {
        if let (Some(t), Some((sym_in, sym_out))) = (trades.as_mut(), symbols.as_ref()) {
            t.push(TradeRecord {
                decided_block: p.decided,
                included_block: block.number,
                tag: b.tag.to_owned(),
                status,
                lost_to_competitor: lost,
                token_in: sym_in.clone(),
                token_out: sym_out.clone(),
                amount_in: b.amount_in.to_string(),
                amount_out: out.to_string(),
                expected_out: b.expected_out.to_string(),
                gas_used: gas,
                l2_fee_wei: l2.to_string(),
                l1_fee_wei: l1.to_string(),
                gas_quote: to_human(gas_q, quote_dec),
                realized_pnl_quote: realized,
            });
        }
    };
    let fill = |status, amount_out| Fill {
        bundle: b.clone(),
        status,
        included_block: block.number,
        amount_out,
        token_out,
    };
    if b.amount_in.is_zero() || held < b.amount_in {
        tally.rejected += 1;
        record(
            FillStatus::Rejected,
            false,
            U256::ZERO,
            0,
            0,
            0,
            U256::ZERO,
            None,
        );
        return fill(FillStatus::Rejected, U256::ZERO);
    }
    // The race: a competitor that saw the same arbitrage runs the same route first.
    let mut lost = false;
    if b.tag == "arb" && cfg.competition.p_lose > 0.0 {
        let base = cfg.env.gas.base_fee_wei(block.base_fee).max(1);
        let multiplier = 1.0 + b.priority_fee as f64 / base as f64;
        let p_lose = cfg.competition.p_lose / multiplier.powf(cfg.competition.bid_elasticity);
        if draw(cfg.seed, block.number, k) < p_lose {
            lost = true;
            let _ = run_legs(market, b);
        }
    }
    let pools: Vec<usize> = b.legs.iter().map(|l| l.pool).collect();
    let saved: Vec<_> = pools.iter().map(|&i| market.states[i].clone()).collect();
    let result = run_legs(market, b);
    let (ok, out, ticks) = match result {
        Some((out, ticks)) if out >= b.min_amount_out => (true, out, ticks),
        Some((_, ticks)) => (false, U256::ZERO, ticks),
        None => (false, U256::ZERO, 0),
    };
    if !ok {
        for (&i, s) in pools.iter().zip(saved) {
            market.states[i] = s;
        }
    }
    let full_gas = bundle_gas(&cfg.env.gas, market, &pools, ticks);
    let gas = if ok {
        full_gas
    } else {
        (full_gas as f64 * cfg.env.gas.revert_fraction) as u64
    };
    let cost = cost_wei(
        &cfg.env.gas,
        block.base_fee,
        gas,
        b.priority_fee,
        b.legs.len(),
    );
    let TxCost {
        l2_wei: l2,
        l1_wei: l1,
        ..
    } = cost;
    let gas_q =
        convert(market, U256::from(cost.total()), cfg.env.native, quote).unwrap_or(U256::ZERO);
    tally.gas_quote += gas_q;
    // Gas comes out of the quote balance; whatever it cannot cover is carried as a debt. It is
    // charged after the swap's own transfers: the swap spends tokens the executor holds, gas is
    // paid by the sender, so a swap of the whole quote balance still fills.
    let pay_gas = |balances: &mut BTreeMap<Address, U256>, unpaid_gas: &mut U256| {
        let qb = balances.entry(quote).or_default();
        if *qb >= gas_q {
            *qb -= gas_q;
        } else {
            *unpaid_gas += gas_q - *qb;
            *qb = U256::ZERO;
        }
    };
    if lost {
        tally.lost += 1;
    }
    if !ok {
        pay_gas(balances, unpaid_gas);
        tally.reverted += 1;
        tally.realizations += 1;
        record(
            FillStatus::Reverted,
            lost,
            U256::ZERO,
            gas,
            l2,
            l1,
            gas_q,
            Some(-to_human(gas_q, quote_dec)),
        );
        return fill(FillStatus::Reverted, U256::ZERO);
    }
    tally.filled += 1;
    // Balances and cost basis (quote units) of what is held.
    let held_before = balances.get(&token_in).copied().unwrap_or(U256::ZERO);
    *balances.entry(token_in).or_default() -= b.amount_in;
    *balances.entry(token_out).or_default() += out;
    pay_gas(balances, unpaid_gas);
    tally.traded_quote += if token_in == quote {
        b.amount_in
    } else if token_out == quote {
        out
    } else {
        convert(market, b.amount_in, token_in, quote).unwrap_or_default()
    };
    let realized = if token_in == quote && token_out == quote {
        Some(signed_human(out, b.amount_in + gas_q, quote_dec))
    } else if token_in == quote {
        *basis.entry(token_out).or_default() += b.amount_in + gas_q;
        None
    } else if token_out == quote {
        let bs = basis.entry(token_in).or_default();
        let sold = dexlab_amm::full_math::mul_div(*bs, b.amount_in, held_before.max(U256::from(1)))
            .unwrap_or(*bs);
        *bs -= sold.min(*bs);
        Some(signed_human(out, sold + gas_q, quote_dec))
    } else {
        None
    };
    if let Some(r) = realized {
        tally.realizations += 1;
        if r > 0.0 {
            tally.wins += 1;
        }
    }
    record(FillStatus::Filled, lost, out, gas, l2, l1, gas_q, realized);
    fill(FillStatus::Filled, out)
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
