//! The books of a run, the same in backtest, paper and live: balances, amounts reserved by
//! bundles in flight, cost basis, gas paid, realised PnL, and the counters the metrics come from.
//!
//! A bundle's input is reserved when it is sent, so a strategy never sees (or spends twice) what
//! an earlier bundle already committed; the reservation is released when the bundle's outcome
//! comes back, whatever it is.

use std::collections::BTreeMap;

use alloy_primitives::{Address, U256};
use dexlab_strategy::gas::TxCost;
use dexlab_strategy::market::{Market, to_human};
use dexlab_strategy::{Bundle, Fill, FillStatus};

use crate::backtest::TradeRecord;
use crate::driver::{InFlight, Outcome};

/// Counters the metrics are computed from.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub submitted: u64,
    pub filled: u64,
    pub reverted: u64,
    pub rejected: u64,
    /// Sent but never included: dropped by the node or past their deadline block.
    pub expired: u64,
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
    pub fn error(&mut self, message: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
    }
}

/// What a valuation needs: `amount` of `from` in `to` at reference prices, `None` when no pool
/// prices it.
pub type Valuer<'a> = &'a dyn Fn(U256, Address, Address) -> Option<U256>;

/// Balances and their history.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub quote: Address,
    pub native: Address,
    pub quote_decimals: u8,
    /// Held, per token (raw units), reserved amounts included.
    pub balances: BTreeMap<Address, U256>,
    /// Committed to bundles in flight, per token.
    pub reserved: BTreeMap<Address, U256>,
    /// Cost basis (quote units) of what is held.
    pub basis: BTreeMap<Address, U256>,
    /// Gas the quote balance could not cover, carried as a debt.
    pub unpaid_gas: U256,
    /// Gas taken out of the quote balance (quote units): live, the operator's account paid it in
    /// the native token and the executor still holds these tokens.
    pub gas_from_quote: U256,
    /// Gas of every outcome booked, in the native token (wei): what the sender's account paid.
    pub gas_paid_wei: u128,
    pub tally: Tally,
    /// Filled only when recording.
    pub trades: Option<Vec<TradeRecord>>,
}

impl Ledger {
    pub fn new(
        quote: Address,
        native: Address,
        quote_decimals: u8,
        capital: U256,
        record: bool,
    ) -> Self {
        Self {
            quote,
            native,
            quote_decimals,
            balances: BTreeMap::from([(quote, capital)]),
            reserved: BTreeMap::new(),
            basis: BTreeMap::new(),
            unpaid_gas: U256::ZERO,
            gas_from_quote: U256::ZERO,
            gas_paid_wei: 0,
            tally: Tally::default(),
            trades: record.then(Vec::new),
        }
    }

    /// Held and not reserved: what a strategy may still commit.
    pub fn available(&self, token: Address) -> U256 {
        let held = self.balances.get(&token).copied().unwrap_or(U256::ZERO);
        let reserved = self.reserved.get(&token).copied().unwrap_or(U256::ZERO);
        held.saturating_sub(reserved)
    }

    /// Reserves a bundle's input when it is sent; `false` (nothing reserved) when the available
    /// balance does not cover it or it spends nothing.
    pub fn reserve(&mut self, b: &Bundle) -> bool {
        let token = b.token_in();
        if b.amount_in.is_zero() || self.available(token) < b.amount_in {
            return false;
        }
        *self.reserved.entry(token).or_default() += b.amount_in;
        true
    }

    fn release(&mut self, b: &Bundle) {
        if let Some(r) = self.reserved.get_mut(&b.token_in()) {
            *r = r.saturating_sub(b.amount_in);
        }
    }

    /// A bundle refused at sending (over the available balance): nothing reserved, no gas.
    pub fn rejected(&mut self, sent: &InFlight, market: &Market) -> Fill {
        self.tally.rejected += 1;
        let token_out = last_token_out(market, &sent.bundle);
        if self.trades.is_some() {
            let t = self.trade_record(
                sent,
                market,
                FillStatus::Rejected,
                (sent.decided, 0, false),
                U256::ZERO,
                (0, TxCost::default()),
                U256::ZERO,
                None,
            );
            self.record(t);
        }
        Fill {
            bundle: sent.bundle.clone(),
            status: FillStatus::Rejected,
            included_block: sent.decided,
            amount_out: U256::ZERO,
            token_out,
        }
    }

    /// Books a bundle's outcome: releases its reservation, moves the tokens of a fill, pays gas
    /// (valued in the quote token by `value` at reference prices), realises PnL; returns the fill
    /// the strategy is told of.
    pub fn settle(&mut self, sent: &InFlight, o: &Outcome, market: &Market, value: Valuer) -> Fill {
        self.release(&sent.bundle);
        let b = &sent.bundle;
        let quote = self.quote;
        let quote_dec = self.quote_decimals;
        let token_in = b.token_in();
        let token_out = o.token_out;
        let fill = |status, amount_out| Fill {
            bundle: b.clone(),
            status,
            included_block: o.included_block,
            amount_out,
            token_out,
        };
        if o.lost_to_competitor {
            self.tally.lost += 1;
        }
        // Never on chain: no gas. (A live bundle replaced by its cancellation expired too, but
        // the cancellation was mined and paid gas: it is booked below like a revert's.)
        if matches!(o.status, FillStatus::Rejected | FillStatus::Expired) && o.cost.total() == 0 {
            if o.status == FillStatus::Rejected {
                self.tally.rejected += 1;
            } else {
                self.tally.expired += 1;
            }
            if self.trades.is_some() {
                let t = self.trade_record(
                    sent,
                    market,
                    o.status,
                    (o.included_block, o.queue_position, o.lost_to_competitor),
                    U256::ZERO,
                    (0, TxCost::default()),
                    U256::ZERO,
                    None,
                );
                self.record(t);
            }
            return fill(o.status, U256::ZERO);
        }
        self.gas_paid_wei = self.gas_paid_wei.saturating_add(o.cost.total());
        let gas_q = match value(U256::from(o.cost.total()), self.native, quote) {
            Some(g) => g,
            None => {
                let block = o.included_block;
                self.tally.error(|| {
                    format!(
                        "block {block}: gas could not be priced in the quote token (no pool prices \
                         the native token in it); the bundle was charged no gas"
                    )
                });
                U256::ZERO
            }
        };
        self.tally.gas_quote += gas_q;
        let at = (o.included_block, o.queue_position, o.lost_to_competitor);
        if o.status != FillStatus::Filled {
            self.pay_gas(gas_q);
            match o.status {
                FillStatus::Expired => self.tally.expired += 1,
                FillStatus::Rejected => self.tally.rejected += 1,
                _ => self.tally.reverted += 1,
            }
            self.tally.realizations += 1;
            let realized = Some(-to_human(gas_q, quote_dec));
            let status = o.status;
            if self.trades.is_some() {
                let t = self.trade_record(
                    sent,
                    market,
                    status,
                    at,
                    U256::ZERO,
                    (o.gas_used, o.cost),
                    gas_q,
                    realized,
                );
                self.record(t);
            }
            return fill(status, U256::ZERO);
        }
        let held = self.balances.get(&token_in).copied().unwrap_or(U256::ZERO);
        let out = o.amount_out;
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
            value(b.amount_in, token_in, quote).unwrap_or_default()
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
        if self.trades.is_some() {
            let t = self.trade_record(
                sent,
                market,
                FillStatus::Filled,
                at,
                out,
                (o.gas_used, o.cost),
                gas_q,
                realized,
            );
            self.record(t);
        }
        fill(FillStatus::Filled, out)
    }

    /// Gas comes out of the quote balance not reserved by bundles in flight (live, gas is paid
    /// by the sender's account while the bundles' tokens sit in the executor); whatever that
    /// cannot cover is carried as a debt.
    pub fn pay_gas(&mut self, gas_q: U256) {
        let free = self.available(self.quote);
        let qb = self.balances.entry(self.quote).or_default();
        if free >= gas_q {
            *qb -= gas_q;
            self.gas_from_quote += gas_q;
        } else {
            self.unpaid_gas += gas_q - free;
            *qb -= free;
            self.gas_from_quote += free;
        }
    }

    /// What the executor contract should hold of each token by these books: the balances with
    /// the gas charged to the quote token put back (the operator's account paid it).
    pub fn executor_balances(&self) -> BTreeMap<Address, U256> {
        let mut out = self.balances.clone();
        if !self.gas_from_quote.is_zero() {
            *out.entry(self.quote).or_default() += self.gas_from_quote;
        }
        out
    }

    /// Quote value of everything held at reference prices (human units), and the part not held
    /// in the quote token.
    pub fn valuation(&mut self, market: &Market, value: Valuer) -> (f64, f64) {
        let quote = self.quote;
        let mut total = U256::ZERO;
        let mut exposed = U256::ZERO;
        let mut unpriced = None;
        for (&t, &b) in &self.balances {
            match value(b, t, quote) {
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
            let sym = market_symbol(market, t);
            let block = market.block.number;
            self.tally.error(|| {
                format!("block {block}: holdings of {sym} could not be priced in the quote token")
            });
        }
        let dec = self.quote_decimals;
        let eq = to_human(total, dec) - to_human(self.unpaid_gas, dec);
        (eq, to_human(exposed, dec))
    }

    fn record(&mut self, t: TradeRecord) {
        if let Some(trades) = self.trades.as_mut() {
            trades.push(t);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn trade_record(
        &self,
        sent: &InFlight,
        market: &Market,
        status: FillStatus,
        (included_block, queue_position, lost): (u64, u32, bool),
        out: U256,
        (gas, cost): (u64, TxCost),
        gas_q: U256,
        realized: Option<f64>,
    ) -> TradeRecord {
        let b = &sent.bundle;
        TradeRecord {
            decided_block: sent.decided,
            included_block,
            tag: b.tag.to_owned(),
            status,
            lost_to_competitor: lost,
            queue_position,
            token_in: market_symbol(market, b.token_in()),
            token_out: market_symbol(market, last_token_out(market, b)),
            amount_in: b.amount_in.to_string(),
            amount_out: out.to_string(),
            expected_out: b.expected_out.to_string(),
            gas_used: gas,
            l2_fee_wei: cost.l2_wei.to_string(),
            l1_fee_wei: cost.l1_wei.to_string(),
            operator_fee_wei: cost.operator_wei.to_string(),
            gas_quote: to_human(gas_q, self.quote_decimals),
            realized_pnl_quote: realized,
        }
    }
}

pub(crate) fn signed_human(a: U256, b: U256, dec: u8) -> f64 {
    if a >= b {
        to_human(a - b, dec)
    } else {
        -to_human(b - a, dec)
    }
}

pub(crate) fn market_symbol(market: &Market, a: Address) -> String {
    market
        .symbol(a)
        .map_or_else(|| format!("{a:#x}"), str::to_owned)
}

/// The token a bundle ends in.
pub fn last_token_out(market: &Market, b: &Bundle) -> Address {
    let leg = b.legs.last().expect("a bundle has at least one leg");
    let m = &market.pools[leg.pool];
    if m.token0 == leg.token_in {
        m.token1
    } else {
        m.token0
    }
}
