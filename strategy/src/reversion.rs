//! `price-reversion`: a long/flat mean-reversion strategy on one pool's price, so the optimiser has
//! something other than arbitrage to tune.
//!
//! It tracks an exponential moving average and deviation of the log mid price of the cheapest-fee
//! pool that pairs the quote token with the native token (or, without one, with any token). When the price falls `entry_z` deviations
//! below its average it buys the base token with a fraction of its quote balance; when the price
//! recovers above `exit_z` deviations it sells the whole position. It holds inventory between trades,
//! so its equity moves with the price: exposure, turnover and drawdown matter here.

use alloy_primitives::Address;

use crate::market::Market;
use crate::params::{self, ParamKind, ParamSpace, ParamSpec, Params};
use crate::single::SwapPlan;
use crate::{Action, Context, Fill, Strategy, TradingEnv};

pub const NAME: &str = "price-reversion";

pub fn space() -> ParamSpace {
    ParamSpace::new(vec![
        ParamSpec {
            name: "window_blocks",
            kind: ParamKind::Int,
            lo: 10.0,
            hi: 5000.0,
            default: 300.0,
            log_scale: true,
            unit: "blocks",
            help: "EMA window of the log price and of its deviation",
        },
        ParamSpec {
            name: "entry_z",
            kind: ParamKind::Float,
            lo: 0.5,
            hi: 5.0,
            default: 2.0,
            log_scale: false,
            unit: "deviations",
            help: "buy when the price is this many deviations below its average",
        },
        ParamSpec {
            name: "exit_z",
            kind: ParamKind::Float,
            lo: -1.0,
            hi: 3.0,
            default: 0.0,
            log_scale: false,
            unit: "deviations",
            help: "sell the position when the price is above average + exit_z deviations",
        },
        params::trade_fraction(),
        params::max_slippage_bps(),
        params::gas_price_multiplier(1.1),
    ])
}

#[derive(Debug)]
pub struct PriceReversion {
    alpha: f64,
    warmup: u64,
    entry_z: f64,
    exit_z: f64,
    trade_fraction: f64,
    slippage_bps: f64,
    gas_multiplier: f64,
    pool: Option<usize>,
    base: Address,
    quote: Address,
    ema: f64,
    var: f64,
    seen: u64,
    /// A bundle is in flight: no new decision until its fill arrives.
    pending: bool,
    updated: bool,
}

/// The pool `price-reversion` (and the RL environment compared with it) trades: the cheapest-fee
/// pool of the quote against the native token (first on ties), else of the quote against any
/// token. The native pair first, so that a stablecoin pair on a cheaper tier (USDC/DAI at
/// 0.01 %) does not silently turn the strategy into a peg trade.
pub fn traded_pool(market: &Market, env: &TradingEnv) -> Option<usize> {
    let has = |m: &crate::market::PoolMeta, t: Address| m.token0 == t || m.token1 == t;
    let cheapest = |native_only: bool| {
        market
            .pools
            .iter()
            .enumerate()
            .filter(|(_, m)| has(m, env.quote) && (!native_only || has(m, env.native)))
            .min_by_key(|(i, m)| (m.fee, *i))
            .map(|(i, _)| i)
    };
    cheapest(true).or_else(|| cheapest(false))
}

impl PriceReversion {
    pub fn new(market: &Market, env: &TradingEnv, p: &Params) -> Self {
        let pool = traded_pool(market, env);
        let base = pool.map_or(Address::ZERO, |i| {
            let m = &market.pools[i];
            if m.token0 == env.quote {
                m.token1
            } else {
                m.token0
            }
        });
        let window = p.get("window_blocks").max(2.0);
        Self {
            alpha: 2.0 / (window + 1.0),
            warmup: window as u64,
            entry_z: p.get("entry_z"),
            exit_z: p.get("exit_z"),
            trade_fraction: p.get("trade_fraction"),
            slippage_bps: p.get("max_slippage_bps"),
            gas_multiplier: p.get("gas_price_multiplier"),
            pool,
            base,
            quote: env.quote,
            ema: 0.0,
            var: 0.0,
            seen: 0,
            pending: false,
            updated: false,
        }
    }

    fn plan(&self) -> SwapPlan {
        // Skip trades whose gas would eat more than 1 % of their notional.
        SwapPlan {
            slippage_bps: self.slippage_bps,
            gas_multiplier: self.gas_multiplier,
            max_gas_bps: Some(100),
        }
    }
}

impl Strategy for PriceReversion {
    fn name(&self) -> &'static str {
        NAME
    }

    fn on_pool_update(&mut self, _market: &Market, pool: usize) {
        if Some(pool) == self.pool {
            self.updated = true;
        }
    }

    fn on_block(&mut self, market: &Market, ctx: &Context<'_>, out: &mut Vec<Action>) {
        let Some(pool) = self.pool else { return };
        // One observation per block in which the pool moved.
        if !std::mem::take(&mut self.updated) {
            return;
        }
        let Some(price) = market.price_of(pool, self.base) else {
            return;
        };
        let x = price.ln();
        if self.seen == 0 {
            self.ema = x;
            self.var = 0.0;
        }
        let dev = x - self.ema;
        let z = if self.var > 0.0 {
            dev / self.var.sqrt()
        } else {
            0.0
        };
        // Update after computing the signal, so the signal uses only the past.
        self.ema += self.alpha * dev;
        self.var = (1.0 - self.alpha) * (self.var + self.alpha * dev * dev);
        self.seen += 1;
        if self.seen <= self.warmup || self.pending {
            return;
        }
        let enter = (z < -self.entry_z).then_some(self.trade_fraction);
        let bundle = self.plan().long_flat(
            market,
            ctx,
            pool,
            self.base,
            self.quote,
            enter,
            z > self.exit_z,
        );
        if let Some(b) = bundle {
            self.pending = true;
            out.push(Action::Submit(b));
        }
    }

    fn on_fill(&mut self, _fill: &Fill) {
        // Filled, reverted or rejected: the balances say where we stand; decide afresh.
        self.pending = false;
    }

    fn warmup_blocks(&self) -> usize {
        // Blocks, not observations: the pool may not move every block, so ask for a few windows.
        (self.warmup as usize).saturating_mul(4)
    }
}
