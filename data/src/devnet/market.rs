//! The simulated market: a latent reference price, noise traders and informed traders.
//!
//! The reference log-price of each token in USD follows a random walk whose volatility switches
//! between a calm and a stressed regime, with Poisson jumps on top; USDC is the numeraire, and the
//! second dollar (DAI) wobbles around its peg (a mean-reverting walk). Noise traders arrive at a
//! Poisson rate and trade heavy-tailed (Pareto) sizes on random venues. Informed traders watch the
//! reference and push a venue's price back inside its fee band, but each venue is visited only
//! every few blocks (its latency), so cross-venue spreads open on news and close venue by venue.
//! Everything draws from one ChaCha8 stream seeded by `--seed`, and reads only chain state, so
//! the same seed mines the same chain.
//!
//! Priority fees order each block, as Base's sequencer does: noise traders bid a small random
//! priority fee, informed traders bid more, the more the wider the gap they close (a share of the
//! edge they race for), so within a block the arbitrage lands first and the noise after it. A
//! trader's later transaction in a block bids no more than its earlier one: its nonce puts it
//! behind that one anyway, and anvil's fee order (1.7) silently drops a transaction that outbids
//! its own pending predecessor.

use std::collections::HashMap;

use alloy::primitives::{I256, U256, aliases::U160};
use alloy::sol_types::SolCall;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Pareto, Poisson};

use super::ChainUpConfig;
use super::bindings::*;
use super::deploy::{DEFAULT_PRIORITY_FEE, Deployment, INFORMED, NOISE, sqrt_price_x96, u256_of};
use crate::error::{DataError, Result};
use crate::types::{PoolInfo, Protocol};
use dexlab_amm::solidly::SolidlyPool;

/// Market parameters. Per-block figures assume 2-second blocks; [`Self::for_block_time_ms`]
/// rescales them to other block lengths.
#[derive(Debug, Clone)]
pub struct MarketParams {
    pub calm_vol: f64,
    pub stressed_vol: f64,
    pub regime_switch_prob: f64,
    pub jump_prob: f64,
    pub jump_vol: f64,
    pub noise_rate: f64,
    /// Pareto scale (USD) and shape of noise trade sizes.
    pub noise_scale_usd: f64,
    pub noise_shape: f64,
    pub noise_cap_usd: f64,
    /// Probability that an informed trader shows up at a venue when its latency allows.
    pub informed_presence: f64,
    /// Noise traders' priority fee, wei per gas: uniform in this range (Base's typical bids are
    /// around 0.001 gwei).
    pub noise_priority_fee: std::ops::RangeInclusive<u128>,
    /// Informed traders' priority fee: this floor, above every noise bid, plus
    /// `informed_fee_per_bps` for each basis point of the gap they close, times a uniform draw in
    /// [0.5, 1.5) (traders value the same gap differently).
    pub informed_priority_fee_floor: u128,
    pub informed_fee_per_bps: f64,
}

impl Default for MarketParams {
    fn default() -> Self {
        Self {
            calm_vol: 0.0006,
            stressed_vol: 0.002,
            regime_switch_prob: 0.01,
            jump_prob: 0.003,
            jump_vol: 0.008,
            noise_rate: 2.5,
            noise_scale_usd: 200.0,
            noise_shape: 1.3,
            noise_cap_usd: 400_000.0,
            informed_presence: 0.85,
            noise_priority_fee: DEFAULT_PRIORITY_FEE / 10..=DEFAULT_PRIORITY_FEE * 2,
            informed_priority_fee_floor: DEFAULT_PRIORITY_FEE * 10,
            informed_fee_per_bps: 2_000_000.0,
        }
    }
}

impl MarketParams {
    /// The default market on blocks `ms` milliseconds apart: the reference price moves as much
    /// per second as on 2-second blocks (volatility scaled by the square root of the block
    /// length, regime switches and jumps in proportion to it). Trading stays per block (noise
    /// arrivals and informed visits), so short blocks still carry swaps and cross-venue gaps
    /// still close venue by venue, in fewer seconds.
    pub fn for_block_time_ms(ms: u64) -> Self {
        let d = Self::default();
        let share = ms as f64 / 2000.0;
        Self {
            calm_vol: d.calm_vol * share.sqrt(),
            stressed_vol: d.stressed_vol * share.sqrt(),
            regime_switch_prob: (d.regime_switch_prob * share).min(1.0),
            jump_prob: (d.jump_prob * share).min(1.0),
            ..d
        }
    }
}

/// Blocks between informed visits per venue: fast venues are arbitraged first.
fn latency(dex: &str, fee: u32) -> u64 {
    match (dex, fee) {
        ("uniswap-v3", 500) | ("aerodrome-slipstream", 500) => 1,
        ("uniswap-v3", _) => 3,
        ("pancakeswap-v3", _) | ("aerodrome", _) => 2,
        ("uniswap-v2", _) | ("aerodrome-slipstream", _) => 4,
        _ => 6,
    }
}

/// Tokens whose reference price is pinned near one dollar (a mean-reverting wobble around it)
/// rather than walking: the second dollar of the stable pair. USDC is the numeraire and never
/// moves.
fn pegged(symbol: &str) -> bool {
    matches!(symbol, "DAI" | "USDbC" | "USDT")
}

/// Per-block pull of a pegged token's log-price back to zero, and its noise.
const PEG_REVERSION: f64 = 0.05;
const PEG_VOL: f64 = 0.00004;

fn err(e: impl std::fmt::Display) -> DataError {
    DataError::Devnet(e.to_string())
}

/// Current token1-per-token0 raw price of a pool, read from the chain.
async fn pool_price(d: &Deployment, pool: &PoolInfo) -> Result<Option<(f64, U256, U256)>> {
    match pool.protocol {
        Protocol::UniswapV2 | Protocol::Solidly => {
            let r = IUniswapV2Pair::new(pool.address, &d.provider)
                .getReserves()
                .call()
                .await
                .map_err(err)?;
            let (r0, r1) = (U256::from(r.reserve0), U256::from(r.reserve1));
            if r0.is_zero() {
                return Ok(None);
            }
            if pool.stable == Some(true) {
                return Ok(Some((stable_pool(pool, r0, r1).marginal_price(), r0, r1)));
            }
            Ok(Some((f64::from(r1) / f64::from(r0), r0, r1)))
        }
        Protocol::UniswapV3 | Protocol::PancakeV3 | Protocol::Slipstream => {
            let s = IV3Pool::new(pool.address, &d.provider)
                .slot0()
                .call()
                .await
                .map_err(err)?;
            let sp = f64::from(U256::from(s.sqrtPriceX96)) / 2f64.powi(96);
            Ok(Some((sp * sp, U256::ZERO, U256::ZERO)))
        }
    }
}

fn stable_pool(pool: &PoolInfo, r0: U256, r1: U256) -> SolidlyPool {
    SolidlyPool::new(
        r0,
        r1,
        pool.token0.decimals,
        pool.token1.decimals,
        true,
        pool.fee,
    )
}

/// The input that moves a stable pool's marginal price to `target` (raw token1 per token0)
/// without passing it: bisection on the pool's exact math.
fn stable_input_to(pool: &PoolInfo, r0: U256, r1: U256, target: f64, zero_for_one: bool) -> U256 {
    let sp = stable_pool(pool, r0, r1);
    let (mut lo, mut hi) = (U256::ZERO, if zero_for_one { r0 } else { r1 });
    while hi - lo > U256::ONE {
        let mid = lo + ((hi - lo) >> 1);
        let mut s = sp;
        // Selling token0 lowers its price: short of the target while still above it.
        let short = s.swap_exact_in(mid, zero_for_one).is_ok()
            && if zero_for_one {
                s.marginal_price() > target
            } else {
                s.marginal_price() < target
            };
        if short {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Sends a trade selling `amount_in` of token0 (`zero_for_one`) or token1, optionally stopping at
/// a price, bidding `priority_fee` wei per gas.
async fn trade(
    d: &mut Deployment,
    from: usize,
    pool: &PoolInfo,
    zero_for_one: bool,
    amount_in: U256,
    limit_raw_price: Option<f64>,
    priority_fee: u128,
) -> Result<bool> {
    if amount_in.is_zero() {
        return Ok(false);
    }
    let from = d.accounts[from];
    let router = d.router;
    let input = match pool.protocol {
        Protocol::Solidly => IDexlabRouter::solidlySwapCall {
            pool: pool.address,
            tokenIn: if zero_for_one {
                pool.token0.address
            } else {
                pool.token1.address
            },
            amountIn: amount_in,
            amountOutMin: U256::ZERO,
            to: from,
        }
        .abi_encode(),
        Protocol::UniswapV2 => {
            let token_in = if zero_for_one {
                pool.token0.address
            } else {
                pool.token1.address
            };
            let fee_bps = (pool.fee / 100) as u16;
            IDexlabRouter::v2SwapCall {
                pair: pool.address,
                tokenIn: token_in,
                amountIn: amount_in,
                amountOutMin: U256::ZERO,
                to: from,
                feeBps: fee_bps,
            }
            .abi_encode()
        }
        Protocol::UniswapV3 | Protocol::PancakeV3 | Protocol::Slipstream => {
            let limit = limit_raw_price.map(sqrt_price_x96).unwrap_or(U256::ZERO);
            IDexlabRouter::v3SwapCall {
                pool: pool.address,
                zeroForOne: zero_for_one,
                amountSpecified: I256::try_from(amount_in).unwrap_or(I256::MAX),
                sqrtPriceLimitX96: U160::saturating_from(limit),
            }
            .abi_encode()
        }
    };
    d.send_with_priority_fee(from, Some(router), input, 2_500_000, priority_fee, "trade")
        .await?;
    Ok(true)
}

/// `want`, capped at what `trader` bid earlier in this block (see the module docs).
fn bid(bids: &mut HashMap<usize, u128>, trader: usize, want: u128) -> u128 {
    let b = bids.get(&trader).map_or(want, |&earlier| want.min(earlier));
    bids.insert(trader, b);
    b
}

/// The market's state between blocks: the reference prices, the regime and the random stream.
/// History and live mining share one, so a live devnet continues the seeded market where its
/// history stopped.
pub struct Market {
    p: MarketParams,
    rng: ChaCha8Rng,
    normal: Normal<f64>,
    pareto: Pareto<f64>,
    poisson: Poisson<f64>,
    log_usd: Vec<f64>,
    stable: Vec<bool>,
    pegged: Vec<bool>,
    stressed: bool,
    /// Market blocks mined so far (the informed traders' latency counts these).
    block: u64,
}

impl std::fmt::Debug for Market {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Market")
            .field("block", &self.block)
            .field("stressed", &self.stressed)
            .finish()
    }
}

/// What one market block sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarketBlock {
    pub number: u64,
    pub timestamp: u64,
    /// Trades sent (some may revert, as on chain).
    pub trades: u64,
}

impl Market {
    pub fn new(d: &Deployment, seed: u64, p: MarketParams) -> Self {
        Self {
            normal: Normal::new(0.0, 1.0).expect("valid normal"),
            pareto: Pareto::new(p.noise_scale_usd, p.noise_shape).expect("valid pareto"),
            poisson: Poisson::new(p.noise_rate).expect("valid poisson"),
            p,
            rng: ChaCha8Rng::seed_from_u64(seed),
            log_usd: d.usd.iter().map(|u| u.ln()).collect(),
            stable: d.tokens.iter().map(|t| t.symbol == "USDC").collect(),
            pegged: d.tokens.iter().map(|t| pegged(&t.symbol)).collect(),
            stressed: false,
            block: 0,
        }
    }

    /// Switches to other parameters (e.g. live blocks of another length), keeping the prices,
    /// the regime and the random stream.
    pub fn set_params(&mut self, p: MarketParams) {
        self.pareto = Pareto::new(p.noise_scale_usd, p.noise_shape).expect("valid pareto");
        self.poisson = Poisson::new(p.noise_rate).expect("valid poisson");
        self.p = p;
    }

    /// Sends one block of trades and mines it at `timestamp`.
    pub async fn step(&mut self, d: &mut Deployment, timestamp: u64) -> Result<MarketBlock> {
        let block = self.block;
        let p = &self.p;
        let rng = &mut self.rng;
        if rng.random_bool(p.regime_switch_prob) {
            self.stressed = !self.stressed;
        }
        let vol = if self.stressed {
            p.stressed_vol
        } else {
            p.calm_vol
        };
        for (i, lp) in self.log_usd.iter_mut().enumerate() {
            if self.stable[i] {
                continue;
            }
            if self.pegged[i] {
                *lp += -PEG_REVERSION * *lp + PEG_VOL * self.normal.sample(rng);
                continue;
            }
            *lp += vol * self.normal.sample(rng);
            if rng.random_bool(p.jump_prob) {
                *lp += p.jump_vol * self.normal.sample(rng);
            }
        }
        let usd: Vec<f64> = self.log_usd.iter().map(|x| x.exp()).collect();
        let mut bids: HashMap<usize, u128> = HashMap::new();
        let pools = d.pools.clone();
        let mut trades = 0;

        // Informed traders (they outbid the noise, so the block puts them first).
        for (k, pool) in pools.iter().enumerate() {
            if !block.is_multiple_of(latency(&pool.dex, pool.fee))
                || !rng.random_bool(p.informed_presence)
            {
                continue;
            }
            let trader = INFORMED.start + (k + block as usize) % INFORMED.len();
            let Some((price, r0, r1)) = pool_price(d, pool).await? else {
                continue;
            };
            let reference = d.raw_price(pool, &usd);
            let fee = pool.fee as f64 / 1e6;
            // Aim inside the no-arbitrage band, leaving a little edge for gas.
            let (target, zero_for_one) = if price > reference * (1.0 + fee) * 1.0005 {
                (reference * (1.0 + fee), true)
            } else if price < reference * (1.0 - fee) / 1.0005 {
                (reference * (1.0 - fee), false)
            } else {
                continue;
            };
            let gap_bps = (price / target).ln().abs() * 1e4;
            let priority_fee = bid(
                &mut bids,
                trader,
                p.informed_priority_fee_floor
                    + (gap_bps * p.informed_fee_per_bps * rng.random_range(0.5..1.5)) as u128,
            );
            let sent = match pool.protocol {
                Protocol::UniswapV3 | Protocol::PancakeV3 | Protocol::Slipstream => {
                    // The price limit stops the swap at the target; the amount is only a cap.
                    let cap = U256::from(10u64).pow(U256::from(
                        if zero_for_one {
                            pool.token0.decimals
                        } else {
                            pool.token1.decimals
                        } as u64
                            + 9,
                    ));
                    trade(
                        d,
                        trader,
                        pool,
                        zero_for_one,
                        cap,
                        Some(target),
                        priority_fee,
                    )
                    .await?
                }
                Protocol::Solidly if pool.stable == Some(true) => {
                    let amount = stable_input_to(pool, r0, r1, target, zero_for_one);
                    trade(d, trader, pool, zero_for_one, amount, None, priority_fee).await?
                }
                Protocol::UniswapV2 | Protocol::Solidly => {
                    let (x, y) = (f64::from(r0), f64::from(r1));
                    let k = x * y;
                    let amount = if zero_for_one {
                        (k / target).sqrt() - x
                    } else {
                        (k * target).sqrt() - y
                    };
                    trade(
                        d,
                        trader,
                        pool,
                        zero_for_one,
                        u256_of(amount / (1.0 - fee)),
                        None,
                        priority_fee,
                    )
                    .await?
                }
            };
            trades += u64::from(sent);
        }

        // Noise traders.
        let n_noise = self.poisson.sample(rng) as usize;
        for _ in 0..n_noise {
            let pool = &pools[rng.random_range(0..pools.len())];
            let zero_for_one = rng.random_bool(0.5);
            let size_usd = self.pareto.sample(rng).min(p.noise_cap_usd);
            let token = if zero_for_one {
                &pool.token0
            } else {
                &pool.token1
            };
            let (i, _) = d.token(token.address);
            let amount = size_usd / usd[i] * 10f64.powi(token.decimals as i32);
            let trader = rng.random_range(NOISE);
            let priority_fee = bid(
                &mut bids,
                trader,
                rng.random_range(p.noise_priority_fee.clone()),
            );
            let sent = trade(
                d,
                trader,
                pool,
                zero_for_one,
                u256_of(amount),
                None,
                priority_fee,
            )
            .await?;
            trades += u64::from(sent);
        }
        d.forget_pending();
        let number = d.mine_at(timestamp).await?;
        self.block += 1;
        Ok(MarketBlock {
            number,
            timestamp,
            trades,
        })
    }
}

/// Mines `cfg.blocks` blocks of market activity, `cfg.block_time` seconds apart, and returns the
/// market to continue from.
pub async fn run(d: &mut Deployment, cfg: &ChainUpConfig, progress: bool) -> Result<Market> {
    let mut market = Market::new(d, cfg.seed, MarketParams::default());
    let bar = if progress {
        indicatif::ProgressBar::new(cfg.blocks)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "mining {bar:40} {pos}/{len} blocks {per_sec} eta {eta}",
        )
        .expect("valid template"),
    );
    for _ in 0..cfg.blocks {
        let timestamp = d.timestamp + d.block_time;
        market.step(d, timestamp).await?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(market)
}

/// Calldata of a router V3 swap selling `amount_in` with no price limit (for tests and tools).
pub fn router_v3_swap_calldata(
    pool: alloy::primitives::Address,
    zero_for_one: bool,
    amount_in: U256,
) -> alloy::primitives::Bytes {
    IDexlabRouter::v3SwapCall {
        pool,
        zeroForOne: zero_for_one,
        amountSpecified: I256::try_from(amount_in).unwrap_or(I256::MAX),
        sqrtPriceLimitX96: U160::ZERO,
    }
    .abi_encode()
    .into()
}
