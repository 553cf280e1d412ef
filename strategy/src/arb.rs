//! `cross-venue-arb`: two-leg arbitrage between pools on the same token pair, sized with the exact
//! pool math.
//!
//! When a block leaves two pools on the same pair priced further apart than their fees, the strategy
//! buys the base token where it is cheap and sells it where it is dear, starting and ending in the
//! quote token. The size maximises `out(in) - in`: in closed form for two constant-product pools,
//! numerically otherwise (a bracketed search for where the route's marginal rate falls to 1,
//! every point an exact quote). Routes are ranked by their closed form in floats, and a route
//! whose closed form proves it cannot pay its gas is not sized at all.
//! The bundle's minimum output is the input plus the estimated gas, so a trade that is no longer
//! profitable at inclusion reverts on chain, paying gas, as it would live.

use alloy_primitives::{Address, U256, U512};

use crate::gas::{bundle_gas, convert, cost_at};
use crate::market::{Market, PoolState, u256_to_f64};
use crate::params::{ParamKind, ParamSpace, ParamSpec, Params};
use crate::{Action, Bundle, BundleTag, Context, Leg, Strategy, TradingEnv};

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
            name: "bid_share",
            kind: ParamKind::Float,
            lo: 0.0,
            hi: 0.95,
            default: 0.5,
            log_scale: false,
            unit: "fraction of expected profit",
            help: "priority fee bid, as a share of the profit left after base-fee gas: the higher \
                   bidder lands first in a block ordered by priority fee",
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
    bid_share: f64,
    pairs: Vec<Pair>,
    dirty: Vec<bool>,
    quote: Address,
    /// Scratch for [`Self::candidate`]: each pool's price of the base this block.
    mids: Vec<f64>,
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
                    let base = if ma.token0 == env.quote {
                        ma.token1
                    } else {
                        ma.token0
                    };
                    pairs.push(Pair { a, b, base });
                }
            }
        }
        Self {
            min_profit_bps: p.get("min_profit_bps"),
            max_notional_frac: p.get("max_notional_frac"),
            size_fraction: p.get("size_fraction"),
            bid_share: p.get("bid_share"),
            pairs,
            dirty: vec![false; n],
            quote: env.quote,
            mids: Vec::new(),
        }
    }

    /// The route between `pair` that a float look at mid prices says could profit: buy the base
    /// where it is cheaper, sell it where it is dearer. `None` when the gap does not beat both
    /// fees, since then no size can profit. `mids` caches each pool's price of the base for the
    /// block (NaN: not asked yet), since every pool is in several pairs.
    fn candidate(&self, market: &Market, pair: Pair, mids: &mut [f64]) -> Option<[Leg; 2]> {
        let mut price = |i: usize| {
            if mids[i].is_nan() {
                mids[i] = market.price_of(i, pair.base).unwrap_or(f64::INFINITY);
            }
            Some(mids[i]).filter(|p| p.is_finite())
        };
        let (pa, pb) = (price(pair.a)?, price(pair.b)?);
        let fees = (market.fee(pair.a) + market.fee(pair.b)) as f64 / 1e6;
        let (buy, sell, gap) = if pa < pb {
            (pair.a, pair.b, pb / pa - 1.0)
        } else {
            (pair.b, pair.a, pa / pb - 1.0)
        };
        (gap > fees).then_some([
            Leg {
                pool: buy,
                token_in: self.quote,
            },
            Leg {
                pool: sell,
                token_in: pair.base,
            },
        ])
    }

    /// The bundle for `route`, sized and checked with exact quotes, if it passes the thresholds.
    fn bundle(
        &self,
        market: &Market,
        ctx: &Context<'_>,
        route: [Leg; 2],
        approx: Option<Approx>,
    ) -> Option<Bundle> {
        let cap = scale(ctx.balance(self.quote), self.max_notional_frac);
        if cap.is_zero() {
            return None;
        }
        // A route whose best profit net of the minimum profit cannot pay even the gas at the
        // base fee fails the test below whatever its size. Where the closed form is the route's
        // exact curve up to its optimum (neither leg crosses an initialized tick before it), its
        // float optimum says so without a quote: integer swaps round in the pools' favour, and
        // profit is concave, so no size does better (the margin covers float error and
        // Solidly's floored fee).
        if let Some(a) = approx
            && stays_in_range(market, route[0], a.x_net)
            && stays_in_range(market, route[1], a.mid_net)
        {
            let gas = bundle_gas(&ctx.env.gas, market, &[route[0].pool, route[1].pool], 0);
            let base = cost_at(&ctx.env.gas, &market.block, gas, 0, 2).total();
            let floor = convert(market, U256::from(base), ctx.env.native, self.quote)?;
            if a.net < u256_to_f64(floor) * (1.0 - 1e-6) - 2.0 {
                return None;
            }
        }
        let sized = optimal_input(market, &route, cap)?;
        let amount_in = scale(sized.amount_in, self.size_fraction)
            .max(U256::from(1))
            .min(cap);
        let (out, ticks) = if amount_in == sized.amount_in {
            (sized.amount_out, sized.ticks_crossed)
        } else {
            route_quote(market, &route, amount_in)?
        };
        if out <= amount_in {
            return None;
        }
        let pools = [route[0].pool, route[1].pool];
        let gas = bundle_gas(&ctx.env.gas, market, &pools, ticks);
        let profit = out - amount_in;
        let min_profit = scale(amount_in, self.min_profit_bps / 1e4);
        let (priority_fee, gas_quote) = bid(
            market,
            ctx.env,
            self.quote,
            gas,
            2,
            profit.saturating_sub(min_profit),
            self.bid_share,
        )?;
        if profit <= gas_quote + min_profit {
            return None;
        }
        Some(Bundle {
            legs: route.to_vec(),
            amount_in,
            min_amount_out: amount_in + gas_quote,
            priority_fee,
            expected_out: out,
            tag: BundleTag::Arb,
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
        // Rank the candidate routes by the closed-form profit on (virtual) reserves, in floats
        // (a ranking needs no more, and it is asked of every route on every block); routes
        // without a closed form (stable pools) rank first so they are always sized. Then size
        // exactly, best first, and send the first that passes.
        let mut mids = std::mem::take(&mut self.mids);
        mids.clear();
        mids.resize(market.pools.len(), f64::NAN);
        let mut ranked: Vec<(f64, usize, [Leg; 2], Option<Approx>)> = Vec::new();
        for (i, &pair) in self.pairs.iter().enumerate() {
            if !(self.dirty[pair.a] || self.dirty[pair.b]) {
                continue;
            }
            let Some(route) = self.candidate(market, pair, &mut mids) else {
                continue;
            };
            match approx_profit(market, route, self.min_profit_bps / 1e4) {
                Some(a) if a.profit > 0.0 => ranked.push((a.profit, i, route, Some(a))),
                Some(_) => {}
                None => ranked.push((f64::INFINITY, i, route, None)),
            }
        }
        self.mids = mids;
        self.dirty.iter_mut().for_each(|d| *d = false);
        ranked.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        // One bundle per block: they would all spend the same balance.
        if let Some(b) = ranked
            .into_iter()
            .find_map(|(_, _, r, a)| self.bundle(market, ctx, r, a))
        {
            out.push(Action::Submit(b));
        }
    }
}

/// The priority fee (wei per gas) that bids `share` of what `profit` (quote units) leaves after the
/// gas at base fee, and the whole gas cost in quote units at that bid. `None` when gas cannot be
/// priced in the quote token. Chains ordered by priority fee auction the top of a block this way:
/// a searcher pays away part of the opportunity to land before its rivals.
pub fn bid(
    market: &Market,
    env: &TradingEnv,
    quote: Address,
    gas: u64,
    legs: usize,
    profit: U256,
    share: f64,
) -> Option<(u128, U256)> {
    let base_cost = cost_at(&env.gas, &market.block, gas, 0, legs).total();
    let base_quote = convert(market, U256::from(base_cost), env.native, quote)?;
    let surplus = profit.saturating_sub(base_quote);
    let bid_native = convert(market, scale(surplus, share), quote, env.native)?;
    let priority_fee = u128::try_from(bid_native / U256::from(gas.max(1))).unwrap_or(u128::MAX / 2);
    let cost = cost_at(&env.gas, &market.block, gas, priority_fee, legs).total();
    let total = convert(market, U256::from(cost), env.native, quote)?;
    Some((priority_fee, total))
}

/// `x * f` for a fraction `f` in [0, 1], in integers (f is quantised to 1e-9).
pub fn scale(x: U256, f: f64) -> U256 {
    if f.is_nan() || f <= 0.0 {
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

/// The input in `[1, cap]` that maximises `out - in` over a two-leg route, `None` when nothing
/// profits.
///
/// Inside one liquidity range a V3 pool trades like a constant-product pool on its virtual
/// reserves (`L / sqrt P`, `L sqrt P`), and V2 and volatile Solidly pools are constant-product on
/// their real ones, so the closed form gives the optimum whenever neither leg crosses a tick. That
/// is checked with an exact quote; when a leg does cross, a search on exact quotes for where the
/// route's marginal rate falls to 1 refines around the closed-form guess.
pub fn optimal_input(market: &Market, route: &[Leg], cap: U256) -> Option<Sized> {
    let guess = match route {
        [l1, l2] => ClosedForm::of(market, [*l1, *l2]).and_then(|cf| cf.optimum()),
        _ => None,
    };
    optimal_input_from(market, route, cap, guess)
}

/// [`optimal_input`] given the route's closed-form optimum (`None`: there is none).
fn optimal_input_from(
    market: &Market,
    route: &[Leg],
    cap: U256,
    guess: Option<U256>,
) -> Option<Sized> {
    let x = match guess {
        Some(x) if x.is_zero() => return None,
        Some(x) => {
            let x = x.min(cap);
            let (out, ticks) = route_quote(market, route, x)?;
            if ticks == 0 || x == cap {
                return (out > x).then_some(Sized {
                    amount_in: x,
                    amount_out: out,
                    ticks_crossed: ticks,
                });
            }
            // A tick was crossed: liquidity changes past it, so search around the guess.
            numeric_optimum(
                market,
                route,
                (x >> 4usize).max(U256::from(1)),
                x.saturating_mul(U256::from(16)).min(cap),
            )?
        }
        None => numeric_optimum(market, route, U256::from(1), cap)?,
    };
    let (out, ticks) = route_quote(market, route, x)?;
    (out > x).then_some(Sized {
        amount_in: x,
        amount_out: out,
        ticks_crossed: ticks,
    })
}

/// A sized route: its input and the exact output it was quoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sized {
    pub amount_in: U256,
    pub amount_out: U256,
    pub ticks_crossed: u32,
}

/// `(reserve in, reserve out, 1e6 - fee)` of a leg: real reserves for constant-product pools,
/// virtual reserves of the active range for V3 pools, `None` for stable Solidly pools.
fn cp_reserves(market: &Market, leg: Leg) -> Option<(U512, U512, U512)> {
    let m = &market.pools[leg.pool];
    let zfo = m.token0 == leg.token_in;
    let (r0, r1) = match &market.states[leg.pool] {
        PoolState::V2 { reserve0, reserve1 } => (*reserve0, *reserve1),
        PoolState::Solidly(p) if !p.stable => (p.reserve0, p.reserve1),
        PoolState::V3(p) if p.liquidity > 0 && !p.sqrt_price_x96.is_zero() => {
            let l = U256::from(p.liquidity);
            let q96 = U256::from(1) << 96usize;
            let x = dexlab_amm::full_math::mul_div(l, q96, p.sqrt_price_x96).ok()?;
            let y = dexlab_amm::full_math::mul_div(l, p.sqrt_price_x96, q96).ok()?;
            (x, y)
        }
        _ => return None,
    };
    let (rin, rout) = if zfo { (r0, r1) } else { (r1, r0) };
    Some((
        U512::from(rin),
        U512::from(rout),
        U512::from(1_000_000 - market.fee(leg.pool).min(1_000_000)),
    ))
}

/// A two-leg route's closed form on (virtual) reserves, in floats.
#[derive(Debug, Clone, Copy)]
struct Approx {
    /// The profit at the optimum.
    profit: f64,
    /// The most of `profit - min_profit share * input` over all inputs, the input that gets it,
    /// and what the first leg pays for that input (the second leg's input).
    net: f64,
    x_net: f64,
    mid_net: f64,
}

/// The closed-form profit of a two-leg route at its optimum, in floats: for ranking routes and
/// ruling out routes that cannot pay their gas (the route that trades is sized on exact quotes).
/// A profit of zero or less when nothing profits; `None` when a leg has no constant-product form
/// (stable Solidly pools). `min_share` is the minimum profit as a share of the input.
fn approx_profit(market: &Market, route: [Leg; 2], min_share: f64) -> Option<Approx> {
    let leg = |l: Leg| -> Option<(f64, f64, f64)> {
        let m = &market.pools[l.pool];
        let (r0, r1) = match &market.states[l.pool] {
            PoolState::V2 { reserve0, reserve1 } => {
                (u256_to_f64(*reserve0), u256_to_f64(*reserve1))
            }
            PoolState::Solidly(p) if !p.stable => {
                (u256_to_f64(p.reserve0), u256_to_f64(p.reserve1))
            }
            PoolState::V3(p) if p.liquidity > 0 && !p.sqrt_price_x96.is_zero() => {
                let s = u256_to_f64(p.sqrt_price_x96) / 2f64.powi(96);
                let l = p.liquidity as f64;
                (l / s, l * s)
            }
            _ => return None,
        };
        let g = 1.0 - f64::from(market.fee(l.pool)) / 1e6;
        Some(if m.token0 == l.token_in {
            (r0, r1, g)
        } else {
            (r1, r0, g)
        })
    };
    let ((rin1, rout1, g1), (rin2, rout2, g2)) = (leg(route[0])?, leg(route[1])?);
    let (a, b, c) = (
        g1 * g2 * rout1 * rout2,
        rin1 * rin2,
        g1 * (rin2 + g2 * rout1),
    );
    // The most of `a x / (b + c x) - k x`: at `x = (sqrt(a b / k) - b) / c`, when positive.
    let best = |k: f64| {
        let x = ((a * b / k).sqrt() - b) / c;
        if x > 0.0 && x.is_finite() {
            (a * x / (b + c * x) - k * x, x)
        } else {
            (0.0, 0.0)
        }
    };
    if c <= 0.0 || c.is_nan() {
        return Some(Approx {
            profit: 0.0,
            net: 0.0,
            x_net: 0.0,
            mid_net: 0.0,
        });
    }
    let (profit, _) = best(1.0);
    let (net, x_net) = best(1.0 + min_share.max(0.0));
    Some(Approx {
        profit,
        net,
        x_net,
        mid_net: g1 * x_net * rout1 / (rin1 + g1 * x_net),
    })
}

/// Whether selling `x` (a float amount) into `leg` ends inside its pool's active liquidity
/// range, crossing no initialized tick: then the constant-product form on virtual reserves is
/// the swap's exact curve. Always for V2 and Solidly pools; `false` when unsure.
fn stays_in_range(market: &Market, leg: Leg, x: f64) -> bool {
    let PoolState::V3(p) = &market.states[leg.pool] else {
        return true;
    };
    let zfo = market.pools[leg.pool].token0 == leg.token_in;
    let l = p.liquidity as f64;
    let q96 = 2f64.powi(96);
    let s = u256_to_f64(p.sqrt_price_x96) / q96;
    if !(l > 0.0 && s > 0.0 && x.is_finite()) {
        return false;
    }
    let g = 1.0 - f64::from(p.fee) / 1e6;
    // The initialized tick the price would reach first: at or below the current tick when the
    // price falls (token0 sold), above it when it rises.
    let next = if zfo {
        p.ticks.range(..=p.tick).next_back()
    } else {
        p.ticks.range(p.tick.saturating_add(1)..).next()
    };
    let Some(bound) =
        next.and_then(|(&t, _)| dexlab_amm::tick_math::get_sqrt_ratio_at_tick(t).ok())
    else {
        return false;
    };
    let bound = u256_to_f64(bound) / q96;
    if zfo {
        1.0 / (1.0 / s + g * x / l) > bound * (1.0 + 1e-9)
    } else {
        s + g * x / l < bound * (1.0 - 1e-9)
    }
}

/// Two constant-product legs compose into `a x / (b + c x)`: the route's output for input `x` on
/// (virtual) reserves, with its coefficients computed once.
#[derive(Debug, Clone, Copy)]
struct ClosedForm {
    a: U512,
    b: U512,
    c: U512,
}

impl ClosedForm {
    /// `None` when a leg has no constant-product form (stable Solidly pools).
    fn of(market: &Market, route: [Leg; 2]) -> Option<Self> {
        let (rin1, rout1, g1) = cp_reserves(market, route[0])?;
        let (rin2, rout2, g2) = cp_reserves(market, route[1])?;
        let million = U512::from(1_000_000u64);
        Some(Self {
            a: g1 * g2 * rout1 * rout2,
            b: rin1 * rin2 * million * million,
            c: g1 * (rin2 * million + g2 * rout1),
        })
    }

    /// The input that maximises `a x / (b + c x) - x`, `(sqrt(ab) - b) / c`: zero when even the
    /// first unit loses; `None` when it does not fit 512 bits (reserves near 2^128; the numeric
    /// search handles those) or 256.
    fn optimum(&self) -> Option<U256> {
        let (a, b, c) = (self.a, self.b, self.c);
        if a <= b || c.is_zero() {
            return Some(U256::ZERO);
        }
        let x = (isqrt(a.checked_mul(b)?) - b) / c;
        let limbs = x.as_limbs();
        limbs[4..]
            .iter()
            .all(|&l| l == 0)
            .then(|| U256::from_limbs([limbs[0], limbs[1], limbs[2], limbs[3]]))
    }
}

/// `floor(sqrt(n))`, exactly: Newton's iteration from above, started within about 2^-48 of the root
/// by a float square root of `n`'s top bits, so it ends after two or three divisions where ruint's
/// generic `root(2)` takes about twice as many (it was the closed form's hot spot).
fn isqrt(n: U512) -> U512 {
    if n < U512::from(2u64) {
        return n;
    }
    // `n`'s top (at most) 100 bits, shifted by an even amount: their square root is below 2^50,
    // where a float is exact to a quarter unit.
    let shift = (n.bit_len().saturating_sub(100) + 1) & !1;
    let top = (n >> shift).to::<u128>();
    // An over-estimate of sqrt(n) = sqrt(n / 2^shift) 2^(shift/2) < sqrt(top + 1) 2^(shift/2),
    // and sqrt(top + 1) < sqrt(top) + 1/2 for top >= 1; the float errs by under a unit.
    let x0 = ((top as f64).sqrt() as u64).saturating_add(2);
    let mut x = U512::from(x0) << (shift / 2);
    loop {
        let y = (x + n / x) >> 1usize;
        if y >= x {
            return x;
        }
        x = y;
    }
}

/// The route's output for input `x` and its marginal rate there, `d out / d in`: the product of
/// its legs' rates, each where its swap leaves its pool (floats; for sizing only).
fn route_marginal(market: &Market, route: &[Leg], x: U256) -> Option<(U256, f64)> {
    let mut amount = x;
    let mut rate = 1.0;
    for leg in route {
        // An input too small to buy a unit still has a rate: the leg's at (next to) its state.
        let (q, r) = market.quote_marginal(leg.pool, leg.token_in, amount.max(U256::ONE))?;
        if !amount.is_zero() {
            amount = q.amount_out;
        }
        rate *= r;
    }
    Some((amount, rate))
}

/// The most profitable input in `[lo, hi]`, to a relative width of about 1e-4, on exact quotes;
/// the best point seen wins. Profit is concave in the input: its slope, the route's marginal rate
/// less one, falls as the input grows (continuously, also across V3 ticks). So the search keeps
/// a bracket where the rate crosses 1 and narrows it by interpolating `ln rate` in `ln input`
/// (regula falsi with the Illinois weighting; a bisection in `ln input` where the rate cannot be
/// had, e.g. past a pool's liquidity). That takes about eight quotes where a golden-section
/// search on profits took thirty.
fn numeric_optimum(market: &Market, route: &[Leg], lo: U256, hi: U256) -> Option<U256> {
    let (mut lo, mut hi) = (lo.max(U256::ONE), hi.max(lo).max(U256::ONE));
    let mut best = (U256::ZERO, U256::ZERO);
    let mut eval = |x: U256| -> f64 {
        match route_marginal(market, route, x) {
            Some((out, rate)) => {
                let p = out.saturating_sub(x);
                if p > best.1 {
                    best = (x, p);
                }
                if rate > 0.0 {
                    rate.ln()
                } else {
                    f64::NEG_INFINITY
                }
            }
            None => f64::NEG_INFINITY,
        }
    };
    let mut f_lo = eval(lo);
    let mut f_hi = if hi > lo { eval(hi) } else { f_lo };
    // Falling already at `lo` or still rising at `hi`: the best end is the answer.
    if f_lo > 0.0 && f_hi < 0.0 {
        let ln = |x: U256| u256_to_f64(x).ln();
        // Which end the last step replaced (Illinois: a retained end's weight halves when the
        // same end is replaced twice running).
        let mut last_moved_hi = None;
        let mut steps = 0;
        while hi - lo > U256::from(8) && hi - lo > hi >> 13usize && steps < 200 {
            steps += 1;
            let (a, b) = (ln(lo), ln(hi));
            let t = if f_hi.is_finite() {
                (f_lo / (f_lo - f_hi)).clamp(0.0, 1.0)
            } else {
                0.5
            };
            let x = u256_from_f64((a + t * (b - a)).exp())
                .max(lo + U256::ONE)
                .min(hi - U256::ONE);
            let fx = eval(x);
            let moved_hi = fx <= 0.0 || fx.is_nan();
            if moved_hi {
                hi = x;
                f_hi = fx;
                if last_moved_hi == Some(true) {
                    f_lo /= 2.0;
                }
            } else {
                lo = x;
                f_lo = fx;
                if last_moved_hi == Some(false) && f_hi.is_finite() {
                    f_hi /= 2.0;
                }
            }
            last_moved_hi = Some(moved_hi);
        }
    }
    (!best.1.is_zero()).then_some(best.0)
}

/// The integer nearest below a positive float (1 for anything smaller), `U256::MAX` past it.
fn u256_from_f64(v: f64) -> U256 {
    if v < 1.0 || v.is_nan() {
        return U256::ONE;
    }
    if v < 18_446_744_073_709_551_616.0 {
        return U256::from(v as u64);
    }
    let e = v.log2().floor() as usize;
    if e >= 256 {
        return U256::MAX;
    }
    // 53 significant bits, shifted into place.
    let m = (v / 2f64.powi(e as i32 - 52)) as u64;
    U256::from(m) << (e - 52)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sell `a` into pool 0, then `b` into pool 1.
    fn legs(a: Address, b: Address) -> [Leg; 2] {
        [
            Leg {
                pool: 0,
                token_in: a,
            },
            Leg {
                pool: 1,
                token_in: b,
            },
        ]
    }

    fn profit(market: &Market, route: &[Leg], x: U256) -> Option<U256> {
        route_quote(market, route, x).map(|(o, _)| o.saturating_sub(x))
    }
    use crate::market::{Family, PoolMeta};

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
    fn isqrt_is_ruints_floor_root() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut cases: Vec<U512> = (0..200u64).map(U512::from).collect();
        for bits in [
            1usize, 52, 63, 64, 65, 99, 100, 101, 128, 200, 255, 256, 300, 400, 511, 512,
        ] {
            for _ in 0..200 {
                let limbs: [u64; 8] = std::array::from_fn(|_| rng.random());
                let x = U512::from_limbs(limbs) >> (512 - bits);
                // Squares and their neighbours are where a floor root goes wrong.
                let r = x >> (bits / 2);
                cases.extend([
                    x,
                    r * r,
                    (r * r).saturating_sub(U512::from(1)),
                    r * r + U512::from(1),
                ]);
            }
        }
        cases.push(U512::MAX);
        for n in cases {
            assert_eq!(isqrt(n), n.root(2), "isqrt({n})");
        }
    }

    #[test]
    fn closed_form_is_the_integer_optimum() {
        // 1000 WETH / 2.0M USDC vs 1000 WETH / 2.1M USDC: buy WETH in pool 0 with USDC.
        let m = two_v2([
            (1000e18 as u128, 2_000_000e6 as u128),
            (1000e18 as u128, 2_100_000e6 as u128),
        ]);
        let usdc = Address::with_last_byte(2);
        let weth = Address::with_last_byte(1);
        let route = legs(usdc, weth);
        let x = optimal_input(&m, &route, U256::MAX >> 1).unwrap().amount_in;
        let px = profit(&m, &route, x).unwrap();
        assert!(px > U256::ZERO);
        // No nearby integer (within 0.1 %) does better by more than rounding.
        let step = (x / U256::from(1000)).max(U256::from(1));
        for y in [
            x - step,
            x + step,
            x - step * U256::from(10),
            x + step * U256::from(10),
        ] {
            let py = profit(&m, &route, y).unwrap();
            assert!(py <= px + U256::from(2), "x={x} p={px}, y={y} p={py}");
        }
        // The numeric search on the same route lands within 0.1 % of the closed form.
        let n = numeric_optimum(&m, &route, U256::from(1), U256::from(10u128.pow(13))).unwrap();
        let pn = profit(&m, &route, n).unwrap();
        assert!(
            pn * U256::from(1000) >= px * U256::from(999),
            "numeric {pn} vs closed {px}"
        );
    }

    #[test]
    fn no_gap_no_trade() {
        let m = two_v2([
            (1000e18 as u128, 2_000_000e6 as u128),
            (1000e18 as u128, 2_001_000e6 as u128),
        ]);
        let usdc = Address::with_last_byte(2);
        let weth = Address::with_last_byte(1);
        let route = legs(usdc, weth);
        assert_eq!(optimal_input(&m, &route, U256::MAX >> 1), None);
    }

    #[test]
    fn the_search_starts_where_one_unit_buys_nothing() {
        // USDC (6 dp) -> WBTC (8 dp) -> USDC: a unit of USDC buys no satoshi, so the search's
        // lower end has no output; its rate still says the route pays. Sized from 1 to 2^128
        // (no closed-form guess), as a rival with no budget limit sizes it.
        let (usdc, wbtc) = (Address::with_last_byte(2), Address::with_last_byte(1));
        let mk = || PoolMeta {
            decimals0: 8,
            symbol0: "WBTC".into(),
            ..meta(3000, Family::V2)
        };
        let mut m = Market::new(vec![mk(), mk()]);
        m.states[0] = PoolState::V2 {
            reserve0: U256::from(100e8 as u128),
            reserve1: U256::from(6_000_000e6 as u128),
        };
        m.states[1] = PoolState::V2 {
            reserve0: U256::from(100e8 as u128),
            reserve1: U256::from(6_300_000e6 as u128),
        };
        let route = legs(usdc, wbtc);
        assert!(m.quote(0, usdc, U256::ONE).unwrap().amount_out.is_zero());
        let x = numeric_optimum(&m, &route, U256::ONE, U256::from(u128::MAX)).expect("it pays");
        let px = profit(&m, &route, x).unwrap();
        let mut best = U256::ZERO;
        for i in 0..4000 {
            let y = U256::from(10f64.powf(3.0 + i as f64 * 9.0 / 4000.0) as u128);
            best = best.max(profit(&m, &route, y).unwrap_or_default());
        }
        assert!(
            px * U256::from(1000) >= best * U256::from(999),
            "sized {px} at {x}, scan {best}"
        );
    }

    #[test]
    fn the_gas_filter_never_drops_a_route_exact_sizing_would_send() {
        use rand::{Rng, SeedableRng};
        // WETH (token0, the native token) / USDC (token1, the quote) on a V2 pool and a V3 pool
        // (two ranges, so some optima cross a tick), at random depths, gaps and thresholds.
        let (weth, usdc) = (Address::with_last_byte(1), Address::with_last_byte(2));
        let env = TradingEnv {
            quote: usdc,
            native: weth,
            gas: crate::gas::GasConfig::default(),
            model: None,
        };
        let clock = crate::ReplayClock::at(&Default::default());
        let bal = |_: Address| U256::from(10u128.pow(13));
        let ctx = Context {
            clock: &clock,
            balances: &bal,
            env: &env,
            mark: &|_| None,
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (mut filtered, mut sent) = (0, 0);
        for _ in 0..3_000 {
            let mut m = Market::new(vec![
                meta(3000, Family::V2),
                PoolMeta {
                    tick_spacing: 10,
                    ..meta(500, Family::V3)
                },
            ]);
            // 2,500 USDC per WETH: tick -198,080 for 18/6 decimals.
            let depth = 10f64.powf(rng.random_range(-3.0..2.0));
            m.states[0] = PoolState::V2 {
                reserve0: U256::from((depth * 1e18) as u128),
                reserve1: U256::from((depth * 2500e6) as u128),
            };
            // Gaps around the two fees (0.35 %, ~35 ticks), where gas and the minimum decide.
            let t = -198_080 + rng.random_range(-8..8) * 10;
            let l = (depth * 1e15) as u128;
            let near = rng.random_range(1..30) * 10;
            m.states[1] = v3(
                t,
                500,
                10,
                &[(t - near, t + near, l), (-200_000, -192_000, l / 4)],
            );
            let p = space()
                .parse(&serde_json::json!({"min_profit_bps": rng.random_range(0.0..50.0)}))
                .unwrap();
            let arb = CrossVenueArb::new(&m, &env, &p);
            for pair in arb.pairs.clone() {
                let mut mids = vec![f64::NAN; 2];
                let Some(route) = arb.candidate(&m, pair, &mut mids) else {
                    continue;
                };
                let approx = approx_profit(&m, route, arb.min_profit_bps / 1e4);
                let with = arb.bundle(&m, &ctx, route, approx);
                let without = arb.bundle(&m, &ctx, route, None);
                assert_eq!(with, without, "route {route:?}");
                sent += usize::from(without.is_some());
                filtered += usize::from(
                    approx.is_some_and(|a| {
                        stays_in_range(&m, route[0], a.x_net)
                            && stays_in_range(&m, route[1], a.mid_net)
                    }) && without.is_none(),
                );
            }
        }
        assert!(
            sent > 100 && filtered > 100,
            "{sent} sent, {filtered} ruled out unsized"
        );
    }

    fn v3(tick: i32, fee: u32, spacing: i32, ranges: &[(i32, i32, u128)]) -> PoolState {
        let sqrt = dexlab_amm::tick_math::get_sqrt_ratio_at_tick(tick).unwrap();
        let mut p = dexlab_amm::v3::V3Pool::new(sqrt, fee, spacing).unwrap();
        for &(lo, hi, l) in ranges {
            p.modify_position(lo, hi, l as i128).unwrap();
        }
        PoolState::V3(p)
    }

    #[test]
    fn v3_sizing_matches_a_dense_scan_in_range_and_across_ticks() {
        // USDC (token0, 6 dp) / WETH (token1, 18 dp): tick ~ 198000 is ~2500 USDC per WETH.
        let usdc = Address::with_last_byte(1);
        let weth = Address::with_last_byte(2);
        let mk = |fee| PoolMeta {
            token0: usdc,
            token1: weth,
            symbol0: "USDC".into(),
            symbol1: "WETH".into(),
            decimals0: 6,
            decimals1: 18,
            tick_spacing: 10,
            ..meta(fee, Family::V3)
        };
        for (narrow, gap_ticks) in [(false, 60), (true, 60), (true, 200)] {
            let mut m = Market::new(vec![mk(500), mk(3000)]);
            // Pool 0: deep and wide. Pool 1: its price is `gap_ticks` higher (WETH cheaper in
            // USDC there); narrow ranges make the arbitrage cross ticks.
            m.states[0] = v3(198_000, 500, 10, &[(190_000, 206_000, 10u128.pow(19))]);
            let t = 198_000 + gap_ticks;
            let ranges: Vec<(i32, i32, u128)> = if narrow {
                // Thin just below the price, thicker past the tick 20 below it.
                vec![
                    (t - 20, t + 40, 10u128.pow(17)),
                    (t - 3000, t - 20, 3 * 10u128.pow(17)),
                    (190_000, 206_000, 10u128.pow(16)),
                ]
            } else {
                vec![(190_000, 206_000, 10u128.pow(18))]
            };
            m.states[1] = v3(t, 3000, 10, &ranges);
            // Sell USDC in pool 1 (more WETH per USDC there), sell the WETH back in pool 0.
            let route = [
                Leg {
                    pool: 1,
                    token_in: usdc,
                },
                Leg {
                    pool: 0,
                    token_in: weth,
                },
            ];
            let cap = U256::from(10u128.pow(13));
            let x = optimal_input(&m, &route, cap)
                .expect("an opportunity")
                .amount_in;
            let px = profit(&m, &route, x).unwrap();
            let mut best = U256::ZERO;
            for i in 0..3000 {
                let y = U256::from((1e6 * 10f64.powf(i as f64 * 7.0 / 3000.0)) as u128);
                best = best.max(profit(&m, &route, y).unwrap_or_default());
            }
            assert!(
                px * U256::from(1000) >= best * U256::from(999),
                "narrow={narrow}: sized {px} at {x}, scan found {best}"
            );
            let crossed = route_quote(&m, &route, x).unwrap().1;
            assert_eq!(
                crossed > 0,
                narrow,
                "narrow ranges are crossed, the wide one is not"
            );
        }
    }
}
