//! What a transaction costs: L2 execution gas at base fee + priority fee, plus the L1 data fee of
//! OP-stack chains such as Base. Strategies estimate with it and the execution simulator charges
//! with it, so both use the same numbers.

use alloy_primitives::{Address, U256};
use serde::{Deserialize, Serialize};

use crate::market::{Family, Market, PoolState};

/// Gas used by one executor bundle, by leg type. The defaults are typical mainnet figures for a
/// swap through a thin executor contract; calibrate them to your executor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GasConfig {
    /// Transaction base cost plus the executor's own overhead.
    pub base: u64,
    pub per_v2_leg: u64,
    pub per_v3_leg: u64,
    pub per_solidly_leg: u64,
    /// Extra gas per initialized tick a V3 leg crosses.
    pub per_tick_crossed: u64,
    /// Gas a reverted bundle burns (it fails at the final profit check, after the swaps ran).
    pub revert_fraction: f64,
    /// Base fee used when the data has none (wei per gas), e.g. imported logs without headers.
    pub default_base_fee_wei: u128,
    /// Charge the OP-stack L1 data fee (Base, Optimism); false on L1 chains.
    pub op_stack: bool,
    pub l1: L1FeeConfig,
}

impl Default for GasConfig {
    fn default() -> Self {
        Self {
            base: 21_000 + 25_000,
            per_v2_leg: 60_000,
            per_v3_leg: 95_000,
            per_solidly_leg: 75_000,
            per_tick_crossed: 22_000,
            revert_fraction: 0.9,
            default_base_fee_wei: 10_000_000,
            op_stack: true,
            l1: L1FeeConfig::default(),
        }
    }
}

/// The Fjord L1 data fee: `max(100, intercept + fastlz_coef * fastlz_size / 1e6)` estimated bytes
/// times `(16 * l1_base_fee * base_fee_scalar + blob_base_fee * blob_base_fee_scalar) / 1e12`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct L1FeeConfig {
    pub l1_base_fee_wei: u128,
    pub blob_base_fee_wei: u128,
    pub base_fee_scalar: u64,
    pub blob_base_fee_scalar: u64,
    /// FastLZ-compressed size of a bundle transaction: a fixed part and a part per leg.
    pub fastlz_bytes_base: u64,
    pub fastlz_bytes_per_leg: u64,
}

impl Default for L1FeeConfig {
    fn default() -> Self {
        // Base mainnet's scalars (SystemConfig) and typical 2024 L1 fees.
        Self {
            l1_base_fee_wei: 10_000_000_000,
            blob_base_fee_wei: 1,
            base_fee_scalar: 2_269,
            blob_base_fee_scalar: 1_055_762,
            fastlz_bytes_base: 110,
            fastlz_bytes_per_leg: 40,
        }
    }
}

impl L1FeeConfig {
    /// The L1 data fee in wei of a bundle with `legs` legs.
    pub fn fee_wei(&self, legs: usize) -> u128 {
        let fastlz = (self.fastlz_bytes_base + self.fastlz_bytes_per_leg * legs as u64) as i128;
        let size = ((-42_585_600i128 + 836_500 * fastlz) / 1_000_000).max(100) as u128;
        let per_byte = 16 * self.l1_base_fee_wei * self.base_fee_scalar as u128
            + self.blob_base_fee_wei * self.blob_base_fee_scalar as u128;
        size * per_byte / 1_000_000_000_000
    }
}

/// Gas used by a bundle through the given pools.
pub fn bundle_gas(cfg: &GasConfig, market: &Market, pools: &[usize], ticks_crossed: u32) -> u64 {
    let legs: u64 = pools
        .iter()
        .map(|&p| match market.pools[p].family {
            Family::V2 => cfg.per_v2_leg,
            Family::V3 => cfg.per_v3_leg,
            Family::Solidly => cfg.per_solidly_leg,
        })
        .sum();
    cfg.base + legs + cfg.per_tick_crossed * ticks_crossed as u64
}

/// Cost in wei of `gas` units at the block's base fee plus `priority_fee`, and the L1 fee.
pub fn cost_wei(
    cfg: &GasConfig,
    base_fee: Option<u128>,
    gas: u64,
    priority_fee: u128,
    legs: usize,
) -> (u128, u128) {
    let base = base_fee.unwrap_or(cfg.default_base_fee_wei);
    let l2 = gas as u128 * (base + priority_fee);
    let l1 = if cfg.op_stack {
        cfg.l1.fee_wei(legs)
    } else {
        0
    };
    (l2, l1)
}

/// Converts `amount` of `from` into `to` at the mid price of the first known pool holding both,
/// in integer math (no fee, no impact: a valuation, not a trade). `None` when no pool prices it.
pub fn convert(market: &Market, amount: U256, from: Address, to: Address) -> Option<U256> {
    convert_with(&market.pools, |i| &market.states[i], amount, from, to)
}

/// [`convert`] over the states `state` gives for each pool (e.g. history's, where our own trades
/// moved the market's).
pub fn convert_with<'a>(
    pools: &[crate::market::PoolMeta],
    state: impl Fn(usize) -> &'a PoolState,
    amount: U256,
    from: Address,
    to: Address,
) -> Option<U256> {
    if from == to || amount.is_zero() {
        return Some(amount);
    }
    pools.iter().enumerate().find_map(|(i, m)| {
        if !m.has_tokens(from, to) {
            return None;
        }
        let s = state(i);
        let from_is_0 = m.token0 == from;
        match s {
            PoolState::Unknown => None,
            PoolState::V2 { reserve0, reserve1 } => {
                let (rf, rt) = if from_is_0 {
                    (*reserve0, *reserve1)
                } else {
                    (*reserve1, *reserve0)
                };
                mul_div(amount, rt, rf)
            }
            PoolState::Solidly(p) => {
                let (rf, rt) = if from_is_0 {
                    (p.reserve0, p.reserve1)
                } else {
                    (p.reserve1, p.reserve0)
                };
                mul_div(amount, rt, rf)
            }
            PoolState::V3(p) => {
                // price of token0 in token1 = sqrtP^2 / 2^192
                let q96 = U256::from(1) << 96;
                if from_is_0 {
                    mul_div(
                        mul_div(amount, p.sqrt_price_x96, q96)?,
                        p.sqrt_price_x96,
                        q96,
                    )
                } else {
                    mul_div(
                        mul_div(amount, q96, p.sqrt_price_x96)?,
                        q96,
                        p.sqrt_price_x96,
                    )
                }
            }
        }
    })
}

fn mul_div(a: U256, b: U256, d: U256) -> Option<U256> {
    if d.is_zero() {
        return None;
    }
    dexlab_amm::full_math::mul_div(a, b, d).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l1_fee_follows_the_fjord_formula() {
        let c = L1FeeConfig::default();
        // 110 + 2*40 = 190 fastlz bytes -> (-42585600 + 836500*190)/1e6 = 116 estimated bytes.
        let per_byte = 16 * 10_000_000_000u128 * 2269 + 1_055_762;
        assert_eq!(c.fee_wei(2), 116 * per_byte / 1_000_000_000_000);
        // Tiny transactions are charged the 100-byte floor.
        let tiny = L1FeeConfig {
            fastlz_bytes_base: 1,
            fastlz_bytes_per_leg: 0,
            ..c
        };
        assert_eq!(tiny.fee_wei(1), 100 * per_byte / 1_000_000_000_000);
    }
}
