//! Pool metadata, the exact state of every pool, the current block.

use alloy_primitives::{Address, I256, U256};
use dexlab_amm::solidly::SolidlyPool;
use dexlab_amm::v3::V3Pool;
use dexlab_amm::{MathError, v2};
use serde::{Deserialize, Serialize};

/// The AMM family of a pool: it decides which math prices it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    V2,
    V3,
    Solidly,
}

/// Static facts about a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolMeta {
    pub address: Address,
    pub family: Family,
    /// Venue name, e.g. `uniswap-v3`.
    pub dex: String,
    pub token0: Address,
    pub token1: Address,
    pub symbol0: String,
    pub symbol1: String,
    pub decimals0: u8,
    pub decimals1: u8,
    /// LP fee in pips (3000 = 0.30 %).
    pub fee: u32,
    pub tick_spacing: i32,
    pub stable: bool,
}

impl PoolMeta {
    /// `pool:dex:SYM0/SYM1:fee` for reports.
    pub fn label(&self) -> String {
        format!(
            "{}:{}/{}:{}",
            self.dex,
            self.symbol0,
            self.symbol1,
            self.fee as f64 / 1e4
        )
    }

    pub fn has_tokens(&self, a: Address, b: Address) -> bool {
        (self.token0 == a && self.token1 == b) || (self.token0 == b && self.token1 == a)
    }
}

/// The exact state of one pool. Every amount is an integer in the token's smallest unit.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolState {
    /// Not seen yet: cannot be quoted.
    Unknown,
    V2 {
        reserve0: U256,
        reserve1: U256,
    },
    Solidly(SolidlyPool),
    V3(V3Pool),
}

/// An exact-input quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    pub amount_out: U256,
    pub ticks_crossed: u32,
}

impl PoolState {
    pub fn is_known(&self) -> bool {
        !matches!(self, PoolState::Unknown)
    }

    /// The fee (pips) a V3 or Solidly state charges, which follows the changes the data shows;
    /// `None` for V2 reserves (their fee is the listed one) and unknown states.
    pub fn fee(&self) -> Option<u32> {
        match self {
            PoolState::V3(p) => Some(p.fee),
            PoolState::Solidly(p) => Some(p.fee),
            PoolState::V2 { .. } | PoolState::Unknown => None,
        }
    }

    /// Sets the fee of a V3 or Solidly state (V2 fees do not change).
    pub fn set_fee(&mut self, fee: u32) {
        match self {
            PoolState::V3(p) => p.fee = fee,
            PoolState::Solidly(p) => p.fee = fee,
            PoolState::V2 { .. } | PoolState::Unknown => {}
        }
    }

    /// Output of selling `amount_in` (token0 when `zero_for_one`), as the pool contract computes it.
    pub fn quote_exact_in(
        &self,
        meta: &PoolMeta,
        zero_for_one: bool,
        amount_in: U256,
    ) -> Result<Quote, MathError> {
        match self {
            PoolState::Unknown => Err(MathError::InsufficientLiquidity),
            PoolState::V2 { reserve0, reserve1 } => {
                let (rin, rout) = if zero_for_one {
                    (*reserve0, *reserve1)
                } else {
                    (*reserve1, *reserve0)
                };
                Ok(Quote {
                    amount_out: v2::get_amount_out(amount_in, rin, rout, meta.fee)?,
                    ticks_crossed: 0,
                })
            }
            PoolState::Solidly(p) => Ok(Quote {
                amount_out: p.get_amount_out(amount_in, zero_for_one)?,
                ticks_crossed: 0,
            }),
            PoolState::V3(p) => v3_exact_in(p, zero_for_one, amount_in, false).map(|(q, _)| q),
        }
    }

    /// [`Self::quote_exact_in`], and the marginal rate where the swap leaves the pool: the output
    /// per unit of one more unit of input (fee included), in floats. For sizing a trade (the
    /// profit of a route stops growing where the product of its legs' rates falls to 1), never
    /// for amounts.
    pub fn quote_marginal(
        &self,
        meta: &PoolMeta,
        zero_for_one: bool,
        amount_in: U256,
    ) -> Result<(Quote, f64), MathError> {
        let f = u256_to_f64;
        // A constant-product pool after `x` in (of which `g x` counts): `g rin rout / (rin + g x)^2`.
        let cp = |rin: U256, rout: U256, g: f64| {
            let d = f(rin) + g * f(amount_in);
            g * f(rin) * f(rout) / (d * d)
        };
        match self {
            PoolState::V2 { reserve0, reserve1 } => {
                let q = self.quote_exact_in(meta, zero_for_one, amount_in)?;
                let (rin, rout) = if zero_for_one {
                    (*reserve0, *reserve1)
                } else {
                    (*reserve1, *reserve0)
                };
                Ok((q, cp(rin, rout, 1.0 - f64::from(meta.fee) / 1e6)))
            }
            PoolState::Solidly(p) => {
                let q = self.quote_exact_in(meta, zero_for_one, amount_in)?;
                let g = 1.0 - f64::from(p.fee) / 1e6;
                let rate = if p.stable {
                    // The slope of the curve at the reserves the swap leaves (its fee leaves too).
                    let mut end = *p;
                    let kept = amount_in - p.fee_amount(amount_in)?;
                    if zero_for_one {
                        end.reserve0 += kept;
                        end.reserve1 -= q.amount_out;
                    } else {
                        end.reserve1 += kept;
                        end.reserve0 -= q.amount_out;
                    }
                    let m = end.marginal_price();
                    g * if zero_for_one { m } else { 1.0 / m }
                } else if zero_for_one {
                    cp(p.reserve0, p.reserve1, g)
                } else {
                    cp(p.reserve1, p.reserve0, g)
                };
                Ok((q, rate))
            }
            PoolState::V3(p) => {
                let (q, r) = v3_exact_in(p, zero_for_one, amount_in, false)?;
                let s = f(r.sqrt_price_x96) / 2f64.powi(96);
                let g = 1.0 - f64::from(p.fee) / 1e6;
                Ok((q, g * if zero_for_one { s * s } else { 1.0 / (s * s) }))
            }
            PoolState::Unknown => Err(MathError::InsufficientLiquidity),
        }
    }

    /// Applies an exact-input swap to the state, returning its output.
    pub fn swap_exact_in(
        &mut self,
        meta: &PoolMeta,
        zero_for_one: bool,
        amount_in: U256,
    ) -> Result<Quote, MathError> {
        match self {
            PoolState::Unknown => Err(MathError::InsufficientLiquidity),
            PoolState::V2 { reserve0, reserve1 } => {
                let (rin, rout) = if zero_for_one {
                    (reserve0, reserve1)
                } else {
                    (reserve1, reserve0)
                };
                let out = v2::get_amount_out(amount_in, *rin, *rout, meta.fee)?;
                *rin += amount_in;
                *rout -= out;
                Ok(Quote {
                    amount_out: out,
                    ticks_crossed: 0,
                })
            }
            PoolState::Solidly(p) => {
                let out = p.swap_exact_in(amount_in, zero_for_one)?;
                Ok(Quote {
                    amount_out: out,
                    ticks_crossed: 0,
                })
            }
            PoolState::V3(p) => {
                let (q, r) = v3_exact_in(p, zero_for_one, amount_in, true)?;
                p.apply(&r);
                Ok(q)
            }
        }
    }

    /// Mid price of token0 in token1, in human units (decimals applied). A float: for signals,
    /// features and reports only, never for amounts.
    pub fn mid_price(&self, meta: &PoolMeta) -> Option<f64> {
        let scale = 10f64.powi(meta.decimals0 as i32 - meta.decimals1 as i32);
        let raw = match self {
            PoolState::Unknown => return None,
            PoolState::V2 { reserve0, reserve1 } => ratio(*reserve1, *reserve0)?,
            PoolState::Solidly(p) if !p.stable => ratio(p.reserve1, p.reserve0)?,
            // The slope of the stable curve x³y + xy³ = k at the reserves (no swap simulated:
            // this is asked for every pool on every block).
            PoolState::Solidly(p) => p.marginal_price(),
            PoolState::V3(p) => {
                let s = u256_to_f64(p.sqrt_price_x96) / 2f64.powi(96);
                s * s
            }
        };
        let p = raw * scale;
        (p.is_finite() && p > 0.0).then_some(p)
    }
}

/// An exact-input V3 swap and its quote. A V3 pool can stop early at the price limit, leaving input
/// unspent with the trader, so an exact-input quote is valid only when all of it was used. Only
/// with `to_apply` is the result's tick worked out ([`V3Pool::quote`]).
fn v3_exact_in(
    p: &V3Pool,
    zero_for_one: bool,
    amount_in: U256,
    to_apply: bool,
) -> Result<(Quote, dexlab_amm::v3::SwapResult), MathError> {
    let specified = to_i256(amount_in)?;
    let r = if to_apply {
        p.swap(zero_for_one, specified, None)?
    } else {
        p.quote(zero_for_one, specified, None)?
    };
    let (used, out) = if zero_for_one {
        (r.amount0, r.amount1)
    } else {
        (r.amount1, r.amount0)
    };
    if used != specified {
        return Err(MathError::InsufficientLiquidity);
    }
    let q = Quote {
        amount_out: (-out).into_raw(),
        ticks_crossed: r.ticks_crossed,
    };
    Ok((q, r))
}

fn to_i256(x: U256) -> Result<I256, MathError> {
    I256::try_from(x).map_err(|_| MathError::Overflow)
}

fn ratio(num: U256, den: U256) -> Option<f64> {
    (!den.is_zero()).then(|| u256_to_f64(num) / u256_to_f64(den))
}

/// Nearest f64 of a U256 (reports and signals only).
pub fn u256_to_f64(x: U256) -> f64 {
    let limbs = x.as_limbs();
    limbs
        .iter()
        .rev()
        .fold(0.0, |acc, &l| acc * 18_446_744_073_709_551_616.0 + l as f64)
}

/// A raw token amount in human units (reports only).
pub fn to_human(x: U256, decimals: u8) -> f64 {
    u256_to_f64(x) / 10f64.powi(decimals as i32)
}

/// A signed raw amount in human units (reports only).
pub fn signed_to_human(x: I256, decimals: u8) -> f64 {
    let m = to_human(x.unsigned_abs(), decimals);
    if x.is_negative() { -m } else { m }
}

/// A human amount as a raw integer, rounded down; `None` when negative or not finite. For turning
/// configured limits (e.g. "max notional 10,000 USDC") into integers once, at the boundary.
pub fn from_human(x: f64, decimals: u8) -> Option<U256> {
    if !x.is_finite() || x < 0.0 {
        return None;
    }
    // Through the shortest decimal form of `x`, so `1.1` USDC is exactly 1_100_000 units.
    let text = format!("{x}");
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut digits = String::with_capacity(int.len() + decimals as usize);
    digits.push_str(int);
    let d = decimals as usize;
    digits.push_str(&frac[..frac.len().min(d)]);
    digits.extend(std::iter::repeat_n('0', d.saturating_sub(frac.len())));
    digits.parse().ok()
}

/// One block's header, as far as strategies and execution need it. Nothing may assume one block
/// per second or unique timestamps: on Base (a block every 200 ms) several blocks share one
/// seconds timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BlockInfo {
    pub number: u64,
    /// Unix seconds (0 when the data has no timestamps).
    pub timestamp: u64,
    /// Unix milliseconds, where the node gives them (OP-stack nodes may); `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<u64>,
    /// Wei; `None` when the data does not have it (execution then uses its configured default).
    pub base_fee: Option<u128>,
    /// The OP-stack L1 fee inputs in force at this block (the L1Block predeploy's values), where
    /// the data records them; `None`: execution uses its configured ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l1: Option<L1BlockFees>,
}

impl BlockInfo {
    /// A block with a number and a timestamp only.
    pub fn at(number: u64, timestamp: u64) -> Self {
        Self {
            number,
            timestamp,
            ..Self::default()
        }
    }
}

/// The inputs of an OP-stack (Ecotone/Fjord) L1 data fee that change block by block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct L1BlockFees {
    pub l1_base_fee_wei: u128,
    pub blob_base_fee_wei: u128,
    pub base_fee_scalar: u64,
    pub blob_base_fee_scalar: u64,
}

/// A pair's widest gap between the mid prices of the pools that quote it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairSpread {
    /// `A/B` by symbol, the tokens in address order.
    pub pair: String,
    /// Pools of the pair whose price is known.
    pub pools: usize,
    /// (highest − lowest) / lowest mid price, in basis points. A display figure, never an
    /// amount.
    pub bps: f64,
}

/// Every pool's metadata and current state, indexed by pool id (its position in `pools`).
#[derive(Debug, Clone)]
pub struct Market {
    pub pools: Vec<PoolMeta>,
    pub states: Vec<PoolState>,
    pub block: BlockInfo,
}

impl Market {
    pub fn new(pools: Vec<PoolMeta>) -> Self {
        let states = vec![PoolState::Unknown; pools.len()];
        Self {
            pools,
            states,
            block: BlockInfo::default(),
        }
    }

    pub fn mid_price(&self, pool: usize) -> Option<f64> {
        self.states[pool].mid_price(&self.pools[pool])
    }

    /// The LP fee (pips) `pool` charges now: its state's, which follows the fee changes the data
    /// shows, else the listed one.
    pub fn fee(&self, pool: usize) -> u32 {
        self.states[pool].fee().unwrap_or(self.pools[pool].fee)
    }

    /// Price of `base` in `quote` (human units) from `pool`, whichever way round the pool holds them.
    pub fn price_of(&self, pool: usize, base: Address) -> Option<f64> {
        let m = &self.pools[pool];
        let p = self.mid_price(pool)?;
        if m.token0 == base {
            Some(p)
        } else {
            Some(1.0 / p)
        }
    }

    pub fn decimals(&self, token: Address) -> Option<u8> {
        self.pools.iter().find_map(|p| {
            if p.token0 == token {
                Some(p.decimals0)
            } else if p.token1 == token {
                Some(p.decimals1)
            } else {
                None
            }
        })
    }

    pub fn symbol(&self, token: Address) -> Option<&str> {
        self.pools.iter().find_map(|p| {
            if p.token0 == token {
                Some(p.symbol0.as_str())
            } else if p.token1 == token {
                Some(p.symbol1.as_str())
            } else {
                None
            }
        })
    }

    /// [`Self::quote`] and the marginal rate where the swap leaves the pool
    /// ([`PoolState::quote_marginal`]).
    pub fn quote_marginal(
        &self,
        pool: usize,
        token_in: Address,
        amount_in: U256,
    ) -> Option<(Quote, f64)> {
        let m = &self.pools[pool];
        let zfo = m.token0 == token_in;
        self.states[pool].quote_marginal(m, zfo, amount_in).ok()
    }

    /// For each pair two pools or more quote, the widest gap between their mid prices (what a
    /// cross-venue trader watches), pairs in address order.
    pub fn pair_spreads(&self) -> Vec<PairSpread> {
        let mut by_pair: std::collections::BTreeMap<(Address, Address), Vec<f64>> =
            std::collections::BTreeMap::new();
        for (i, m) in self.pools.iter().enumerate() {
            let (a, b) = if m.token0 < m.token1 {
                (m.token0, m.token1)
            } else {
                (m.token1, m.token0)
            };
            if let Some(p) = self.price_of(i, a).filter(|p| p.is_finite() && *p > 0.0) {
                by_pair.entry((a, b)).or_default().push(p);
            }
        }
        by_pair
            .into_iter()
            .filter(|(_, prices)| prices.len() >= 2)
            .map(|((a, b), prices)| {
                let lo = prices.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = prices.iter().copied().fold(0.0, f64::max);
                PairSpread {
                    pair: format!(
                        "{}/{}",
                        self.symbol(a).unwrap_or("?"),
                        self.symbol(b).unwrap_or("?")
                    ),
                    pools: prices.len(),
                    bps: (hi - lo) / lo * 1e4,
                }
            })
            .collect()
    }

    /// Sells `amount_in` of `token_in` through `pool` on a copy-free quote.
    pub fn quote(&self, pool: usize, token_in: Address, amount_in: U256) -> Option<Quote> {
        let m = &self.pools[pool];
        let zfo = m.token0 == token_in;
        self.states[pool].quote_exact_in(m, zfo, amount_in).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_spreads_are_the_widest_gap_between_a_pairs_pools() {
        let (a, b, c) = (
            Address::with_last_byte(1),
            Address::with_last_byte(2),
            Address::with_last_byte(3),
        );
        let pool = |t0, t1, s0: &str, s1: &str| PoolMeta {
            address: Address::ZERO,
            family: Family::V2,
            dex: "t".into(),
            token0: t0,
            token1: t1,
            symbol0: s0.into(),
            symbol1: s1.into(),
            decimals0: 18,
            decimals1: 18,
            fee: 3000,
            tick_spacing: 1,
            stable: false,
        };
        let e = |x: u64| U256::from(x) * U256::from(10u64).pow(U256::from(18u64));
        let mut m = Market::new(vec![
            pool(a, b, "A", "B"),
            // The same pair the other way round: B per A must be inverted.
            pool(b, a, "B", "A"),
            pool(a, b, "A", "B"),
            pool(a, c, "A", "C"),
            pool(a, b, "A", "B"),
        ]);
        // A in B: 2.00, 2.02 (from a pool holding them the other way round), 2.01; A/C has one
        // pool; the last pool is not known yet.
        m.states[0] = PoolState::V2 {
            reserve0: e(100),
            reserve1: e(200),
        };
        m.states[1] = PoolState::V2 {
            reserve0: e(202),
            reserve1: e(100),
        };
        m.states[2] = PoolState::V2 {
            reserve0: e(100),
            reserve1: e(201),
        };
        m.states[3] = PoolState::V2 {
            reserve0: e(100),
            reserve1: e(300),
        };
        let s = m.pair_spreads();
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!((s[0].pair.as_str(), s[0].pools), ("A/B", 3));
        assert!((s[0].bps - 100.0).abs() < 1e-9, "{}", s[0].bps);
    }

    #[test]
    fn the_marginal_rate_is_the_slope_of_the_exact_output() {
        let meta = |family, stable| PoolMeta {
            address: Address::ZERO,
            family,
            dex: "t".into(),
            token0: Address::with_last_byte(1),
            token1: Address::with_last_byte(2),
            symbol0: "A".into(),
            symbol1: "B".into(),
            decimals0: 18,
            decimals1: 6,
            fee: 3000,
            tick_spacing: 10,
            stable,
        };
        let e = |x: u128| U256::from(x);
        let mut v3 = V3Pool::new(
            dexlab_amm::tick_math::get_sqrt_ratio_at_tick(-198_080).unwrap(),
            3000,
            10,
        )
        .unwrap();
        v3.modify_position(-198_200, -198_000, 10i128.pow(16))
            .unwrap();
        v3.modify_position(-199_000, -197_000, 10i128.pow(16))
            .unwrap();
        let pools = [
            (
                meta(Family::V2, false),
                PoolState::V2 {
                    reserve0: e(10u128.pow(21)),
                    reserve1: e(25 * 10u128.pow(11)),
                },
            ),
            (
                meta(Family::Solidly, false),
                PoolState::Solidly(SolidlyPool::new(
                    e(10u128.pow(21)),
                    e(25 * 10u128.pow(11)),
                    18,
                    6,
                    false,
                    3000,
                )),
            ),
            (
                meta(Family::Solidly, true),
                PoolState::Solidly(SolidlyPool::new(
                    e(10u128.pow(24)),
                    e(10u128.pow(12)),
                    18,
                    6,
                    true,
                    500,
                )),
            ),
            (meta(Family::V3, false), PoolState::V3(v3)),
        ];
        let mut checked = 0;
        for (m, st) in &pools {
            for zfo in [true, false] {
                // Inputs from a sliver of the pool to past the V3 pool's first tick.
                let unit: u128 = if zfo { 10u128.pow(15) } else { 10u128.pow(6) };
                for k in [1u128, 30, 1_000, 30_000] {
                    let x = unit * k;
                    let dx = x / 100;
                    // Past the V3 pool's liquidity nothing fills.
                    let Ok(next) = st.quote_exact_in(m, zfo, e(x + dx)) else {
                        continue;
                    };
                    let next = next.amount_out;
                    let (q, rate) = st.quote_marginal(m, zfo, e(x)).unwrap();
                    assert_eq!(q, st.quote_exact_in(m, zfo, e(x)).unwrap());
                    checked += 1;
                    let slope = u256_to_f64(next - q.amount_out) / dx as f64;
                    assert!(
                        (slope / rate - 1.0).abs() < 1e-2,
                        "{:?} zfo={zfo} x={x}: slope {slope}, rate {rate}",
                        m.family
                    );
                }
            }
        }
        assert!(checked >= 28, "{checked} checked");
    }

    #[test]
    fn human_round_trip() {
        assert_eq!(from_human(1.5, 6), Some(U256::from(1_500_000u64)));
        assert_eq!(from_human(1.1, 6), Some(U256::from(1_100_000u64)));
        assert_eq!(from_human(0.0000001, 6), Some(U256::ZERO));
        assert_eq!(from_human(-1.0, 6), None);
        let big = from_human(1e9, 18).unwrap();
        assert_eq!(big, U256::from(10u64).pow(U256::from(27u64)));
        assert!((to_human(big, 18) - 1e9).abs() < 1e-3);
        assert_eq!(u256_to_f64(U256::MAX), 2f64.powi(256));
    }
}
