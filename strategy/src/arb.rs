//! `cross-venue-arb`: two-leg arbitrage between pools on the same token pair, sized with the exact
//! pool math.
//!
//! When a block leaves two pools on the same pair priced further apart than their fees, the strategy
//! buys the base token where it is cheap and sells it where it is dear, starting and ending in the
//! quote token. The size maximises `out(in) - in`: in closed form for two constant-product pools,
//! numerically (log scan, then golden section on integers, every point an exact quote) otherwise.
//! The bundle's minimum output is the input plus the estimated gas, so a trade that is no longer
//! profitable at inclusion reverts on chain, paying gas, as it would live.

use alloy_primitives::{Address, U256, U512};

use crate::gas::{bundle_gas, convert, cost_wei};
use crate::market::{Family, Market, PoolState};
use crate::params::{ParamKind, ParamSpace, ParamSpec, Params};
use crate::{Action, Bundle, Context, Leg, Strategy, TradingEnv};

pub const NAME: &str = "cross-venue-arb";

pub fn space() -> ParamSpace {
    ParamSpace::new(vec![
        ParamSpec {
            name: "min_profit_bps",
            kind: ParamKind::Float,
            lo: 0.0,
            hi: 100.0,
            default: 1.0,
            log_scale: false,
            unit: "bps of notional",
            help: "minimum expected profit net of fees and gas",
        },
        ParamSpec {
            name: "max_notional_frac",
            kind: ParamKind::Float,
            lo: 0.01,
            hi: 1.0,
            default: 0.5,
            log_scale: true,
            unit: "fraction of quote balance",
            help: "largest input of one bundle",
        },
        ParamSpec {
            name: "size_fraction",
            kind: ParamKind::Float,
            lo: 0.1,
            hi: 1.0,
            default: 1.0,
            log_scale: false,
            unit: "",
            help: "fraction of the profit-maximising size to trade",
        },
        ParamSpec {
            name: "gas_price_multiplier",
            kind: ParamKind::Float,
            lo: 1.0,
            hi: 10.0,
            default: 1.5,
            log_scale: true,
            unit: "x base fee",
            help: "total gas price bid; the priority fee is base fee x (multiplier - 1)",
        },
        ParamSpec {
            name: "latency_blocks",
            kind: ParamKind::Int,
            lo: 1.0,
            hi: 5.0,
            default: 1.0,
            log_scale: false,
            unit: "blocks",
            help: "blocks from decision to inclusion",
        },
    ])
}

/// A pair of pools on the same tokens, one of which is the quote token.
#[derive(Debug, Clone, Copy)]
struct Pair {
    a: usize,
    b: usize,
    base: Address,
}

#[derive(Debug)]
pub struct CrossVenueArb {
    min_profit_bps: f64,
    max_notional_frac: f64,
    size_fraction: f64,
    gas_multiplier: f64,
    latency: u64,
    pairs: Vec<Pair>,
    dirty: Vec<bool>,
    quote: Address,
}

impl CrossVenueArb {
    pub fn new(market: &Market, env: &TradingEnv, p: &Params) -> Self {
        let mut pairs = Vec::new();
        let n = market.pools.len();
        for a in 0..n {
            for b in a + 1..n {
                let (ma, mb) = (&market.pools[a], &market.pools[b]);
                if ma.has_tokens(mb.token0, mb.token1)
                    && (ma.token0 == env.quote || ma.token1 == env.quote)
                {
                    let base = if ma.token0 == env.quote { ma.token1 } else { ma.token0 };
                    pairs.push(Pair { a, b, base });
                }
            }
        }
        Self {
            min_profit_bps: p.get("min_profit_bps"),
            max_notional_frac: p.get("max_notional_frac"),
            size_fraction: p.get("size_fraction"),
            gas_multiplier: p.get("gas_price_multiplier"),
            latency: p.get_int("latency_blocks").max(1) as u64,
            pairs,
            dirty: vec![false; n],
            quote: env.quote,
        }
    }

    /// The best bundle between `pair` right now, if any passes the thresholds.
    fn opportunity(&self, market: &Market, ctx: &Context<'_>, pair: Pair) -> Option<Bundle> {
        let (pa, pb) = (market.price_of(pair.a, pair.base)?, market.price_of(pair.b, pair.base)?);
        let (fa, fb) = (market.pools[pair.a].fee, market.pools[pair.b].fee);
        let fees = (fa + fb) as f64 / 1e6;
        // Buy base where it is cheaper, sell it where it is dearer.
        let (buy, sell, gap) = if pa < pb {
            (pair.a, pair.b, pb / pa - 1.0)
        } else {
            (pair.b, pair.a, pa / pb - 1.0)
        };
        // Cheap float prefilter: no size can profit if the gap does not beat both fees.
        if gap <= fees {
            return None;
        }
        let balance = ctx.balance(self.quote);
        let cap = scale(balance, self.max_notional_frac);
        if cap.is_zero() {
            return None;
        }
        let route = [
            Leg { pool: buy, token_in: self.quote },
            Leg { pool: sell, token_in: pair.base },
        ];
        let optimum = optimal_input(market, &route, cap)?;
        let amount_in = scale(optimum, self.size_fraction).max(U256::from(1)).min(cap);
        let (out, ticks) = route_quote(market, &route, amount_in)?;
        if out <= amount_in {
            return None;
        }
        let base_fee = market.block.base_fee.unwrap_or(ctx.env.gas.default_base_fee_wei);
        let priority_fee = (base_fee as f64 * (self.gas_multiplier - 1.0)) as u128;
        let gas = bundle_gas(&ctx.env.gas, market, &[buy, sell], ticks);
        let (l2, l1) = cost_wei(&ctx.env.gas, market.block.base_fee, gas, priority_fee, 2);
        let gas_quote = convert(market, U256::from(l2 + l1), ctx.env.native, self.quote)?;
        let profit = out - amount_in;
        let min_profit = scale(amount_in, self.min_profit_bps / 1e4);
        if profit <= gas_quote + min_profit {
            return None;
        }
        Some(Bundle {
            legs: route.to_vec(),
            amount_in,
            min_amount_out: amount_in + gas_quote,
            priority_fee,
            latency: self.latency,
            expected_out: out,
            tag: "arb",
        })
    }
}

impl Strategy for CrossVenueArb {
    fn name(&self) -> &'static str {
        NAME
    }

    fn on_pool_update(&mut self, _market: &Market, pool: usize) {
        if let Some(d) = self.dirty.get_mut(pool) {
            *d = true;
        }
    }

    fn on_block(&mut self, market: &Market, ctx: &Context<'_>, out: &mut Vec<Action>) {
        if !self.dirty.iter().any(|&d| d) {
            return;
        }
        let mut best: Option<(U256, Bundle)> = None;
        for &pair in &self.pairs {
            if !(self.dirty[pair.a] || self.dirty[pair.b]) {
                continue;
            }
            if let Some(b) = self.opportunity(market, ctx, pair) {
                let edge = b.expected_out - b.amount_in;
                if best.as_ref().is_none_or(|(e, _)| edge > *e) {
                    best = Some((edge, b));
                }
            }
        }
        self.dirty.iter_mut().for_each(|d| *d = false);
        // One bundle per block: they would all spend the same balance.
        if let Some((_, b)) = best {
            out.push(Action::Submit(b));
        }
    }
}

/// `x * f` for a fraction `f` in [0, 1], in integers (f is quantised to 1e-9).
pub fn scale(x: U256, f: f64) -> U256 {
    if !(f > 0.0) {
        return U256::ZERO;
    }
    let ppb = U256::from((f.min(1e9) * 1e9).round() as u64);
    dexlab_amm::full_math::mul_div(x, ppb, U256::from(1_000_000_000u64)).unwrap_or(U256::MAX)
}

/// The output of a route for `amount_in`, and the ticks its V3 legs cross.
pub fn route_quote(market: &Market, route: &[Leg], amount_in: U256) -> Option<(U256, u32)> {
    let mut amount = amount_in;
    let mut ticks = 0;
    for leg in route {
        if amount.is_zero() {
            return None;
        }
        let q = market.quote(leg.pool, leg.token_in, amount)?;
        amount = q.amount_out;
        ticks += q.ticks_crossed;
    }
    Some((amount, ticks))
}

fn profit(market: &Market, route: &[Leg], x: U256) -> Option<U256> {
    route_quote(market, route, x).map(|(o, _)| o.saturating_sub(x))
}

/// The input in `[1, cap]` that maximises `out - in` over a two-leg route, `None` when nothing
/// profits.
pub fn optimal_input(market: &Market, route: &[Leg], cap: U256) -> Option<U256> {
    let closed = match route {
        [l1, l2] => closed_form_v2(market, *l1, *l2),
        _ => None,
    };
    if let Some(x) = closed {
        if x.is_zero() {
            return None;
        }
        let x = x.min(cap);
        return (profit(market, route, x)? > U256::ZERO).then_some(x);
    }
    numeric_optimum(market, route, cap)
}

/// Two constant-product legs compose into `a x / (b + c x)`, maximal at `(sqrt(ab) - b) / c`.
fn closed_form_v2(market: &Market, l1: Leg, l2: Leg) -> Option<U256> {
    let reserves = |leg: Leg| {
        let m = &market.pools[leg.pool];
        if m.family != Family::V2 {
            return None;
        }
        let PoolState::V2 { reserve0, reserve1 } = market.states[leg.pool] else {
            return None;
        };
        let (rin, rout) = if m.token0 == leg.token_in {
            (reserve0, reserve1)
        } else {
            (reserve1, reserve0)
        };
        Some((U512::from(rin), U512::from(rout), U512::from(1_000_000 - m.fee)))
    };
    let (rin1, rout1, g1) = reserves(l1)?;
    let (rin2, rout2, g2) = reserves(l2)?;
    let million = U512::from(1_000_000u64);
    let a = g1 * g2 * rout1 * rout2;
    let b = rin1 * rin2 * million * million;
    let c = g1 * (rin2 * million + g2 * rout1);
    if a <= b || c.is_zero() {
        return Some(U256::ZERO);
    }
    // Reserves near uint112's limit overflow even 512 bits: the numeric search handles those.
    let root = a.checked_mul(b)?.root(2);
    let x = (root - b) / c;
    let limbs = x.as_limbs();
    limbs[4..].iter().all(|&l| l == 0).then(|| U256::from_limbs([limbs[0], limbs[1], limbs[2], limbs[3]]))
}

/// Log-scan for the bracket, then golden section on integers.
fn numeric_optimum(market: &Market, route: &[Leg], cap: U256) -> Option<U256> {
    let eval = |x: U256| -> Option<U256> { profit(market, route, x) };
    // Halve from the cap down until a profitable point is seen and profits start to fall.
    let mut best: Option<(U256, U256)> = None;
    let mut x = cap;
    let mut steps = 0;
    while !x.is_zero() && steps < 80 {
        let p = eval(x).unwrap_or(U256::ZERO);
        match best {
            Some((_, bp)) if p < bp && bp > U256::ZERO => break,
            Some((_, bp)) if p <= bp => {}
            _ => best = Some((x, p)),
        }
        x >>= 1;
        steps += 1;
    }
    let (xb, pb) = best?;
    if pb.is_zero() {
        return None;
    }
    // The optimum lies within [xb / 2, min(2 xb, cap)].
    let mut lo: U256 = xb >> 1usize;
    let mut hi: U256 = (xb << 1usize).min(cap);
    let (mut best_x, mut best_p) = (xb, pb);
    while hi - lo > U256::from(2) && hi - lo > hi >> 20 {
        let third = (hi - lo) / U256::from(3);
        let (m1, m2) = (lo + third, hi - third);
        let (p1, p2) = (eval(m1).unwrap_or(U256::ZERO), eval(m2).unwrap_or(U256::ZERO));
        for (x, p) in [(m1, p1), (m2, p2)] {
            if p > best_p {
                best_x = x;
                best_p = p;
            }
        }
        if p1 < p2 {
            lo = m1;
        } else {
            hi = m2;
        }
    }
    Some(best_x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::PoolMeta;

    fn meta(fee: u32, family: Family) -> PoolMeta {
        PoolMeta {
            address: Address::ZERO,
            family,
            dex: "t".into(),
            token0: Address::with_last_byte(1),
            token1: Address::with_last_byte(2),
            symbol0: "WETH".into(),
            symbol1: "USDC".into(),
            decimals0: 18,
            decimals1: 6,
            fee,
            tick_spacing: 60,
            stable: false,
        }
    }

    fn two_v2(r: [(u128, u128); 2]) -> Market {
        let mut m = Market::new(vec![meta(3000, Family::V2), meta(3000, Family::V2)]);
        for (i, (a, b)) in r.into_iter().enumerate() {
            m.states[i] = PoolState::V2 {
                reserve0: U256::from(a),
                reserve1: U256::from(b),
            };
        }
        m
    }

    #[test]
    fn closed_form_is_the_integer_optimum() {
        // 1000 WETH / 2.0M USDC vs 1000 WETH / 2.1M USDC: buy WETH in pool 0 with USDC.
        let m = two_v2([(1000e18 as u128, 2_000_000e6 as u128), (1000e18 as u128, 2_100_000e6 as u128)]);
        let usdc = Address::with_last_byte(2);
        let weth = Address::with_last_byte(1);
        let route = [Leg { pool: 0, token_in: usdc }, Leg { pool: 1, token_in: weth }];
        let x = optimal_input(&m, &route, U256::MAX >> 1).unwrap();
        let px = profit(&m, &route, x).unwrap();
        assert!(px > U256::ZERO);
        // No nearby integer (within 0.1 %) does better by more than rounding.
        let step = (x / U256::from(1000)).max(U256::from(1));
        for y in [x - step, x + step, x - step * U256::from(10), x + step * U256::from(10)] {
            let py = profit(&m, &route, y).unwrap();
            assert!(py <= px + U256::from(2), "x={x} p={px}, y={y} p={py}");
        }
        // The numeric search on the same route lands within 0.1 % of the closed form.
        let n = numeric_optimum(&m, &route, U256::from(10u128.pow(13))).unwrap();
        let pn = profit(&m, &route, n).unwrap();
        assert!(pn * U256::from(1000) >= px * U256::from(999), "numeric {pn} vs closed {px}");
    }

    #[test]
    fn no_gap_no_trade() {
        let m = two_v2([(1000e18 as u128, 2_000_000e6 as u128), (1000e18 as u128, 2_001_000e6 as u128)]);
        let usdc = Address::with_last_byte(2);
        let weth = Address::with_last_byte(1);
        let route = [Leg { pool: 0, token_in: usdc }, Leg { pool: 1, token_in: weth }];
        assert_eq!(optimal_input(&m, &route, U256::MAX >> 1), None);
    }
}
