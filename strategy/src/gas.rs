//! What a transaction costs: L2 execution gas at base fee + priority fee, plus on OP-stack chains
//! such as Base the L1 data fee (Fjord) and the operator fee (Isthmus, rescaled by Jovian).
//! Strategies estimate with it and the execution simulator charges with it, so both use the same
//! numbers. All of it is integer math in wei.

use alloy_primitives::{Address, U256, U512};
use serde::{Deserialize, Serialize};

use crate::market::{BlockInfo, Family, Market, PoolState};

/// Gas used by one executor bundle, by leg type. The defaults are `DexlabExecutor`'s, measured:
/// a least-squares fit to 257 bundles sent through it on the devnet's real DEX contracts
/// (`dexlab-live`'s `gas` module, `live/benches/executor_gas.rs`; BENCHMARKS.md). Real tokens
/// cost more than the devnet's plain ERC-20s (a proxy like USDC's adds a few thousand gas per
/// transfer): calibrate on a fork of your chain with the same bench.
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
    /// Gas a reverted bundle burns, as a share of the filled bundle's (it fails at the final
    /// profit check, after the swaps ran, and a revert forfeits the storage refunds a fill gets:
    /// measured 1.03–1.17, so above 1).
    pub revert_fraction: f64,
    /// Base fee used when the data has none (wei per gas), e.g. imported logs without headers.
    pub default_base_fee_wei: u128,
    /// The chain's minimum base fee (wei per gas): a lower block base fee, or default, is raised to
    /// it, as the chain itself does. 0 on chains without one (Ethereum).
    pub min_base_fee_wei: u128,
    /// Charge the OP-stack L1 data fee and operator fee (Base, Optimism); false on L1 chains.
    pub op_stack: bool,
    pub l1: L1FeeConfig,
    pub operator: OperatorFeeConfig,
}

impl Default for GasConfig {
    fn default() -> Self {
        Self {
            base: 50_100,
            per_v2_leg: 45_300,
            per_v3_leg: 81_200,
            per_solidly_leg: 107_400,
            per_tick_crossed: 42_500,
            revert_fraction: 1.11,
            default_base_fee_wei: 10_000_000,
            // Base mainnet's Jovian minimum base fee, 0.005 gwei since 2026-02-19 (SystemConfig
            // `minBaseFee`; base/docs "Network fees" page, base/docs#1148,
            // base/contract-deployments#595). It has been raised several times since Jovian
            // (0.0002 gwei in 2025-12): check it before trusting old defaults.
            min_base_fee_wei: 5_000_000,
            op_stack: true,
            l1: L1FeeConfig::default(),
            operator: OperatorFeeConfig::default(),
        }
    }
}

impl GasConfig {
    /// The base fee a transaction pays in a block whose header says `block_base_fee`: the default
    /// when the data has none, never below the chain's minimum.
    pub fn base_fee_wei(&self, block_base_fee: Option<u128>) -> u128 {
        block_base_fee
            .unwrap_or(self.default_base_fee_wei)
            .max(self.min_base_fee_wei)
    }

    /// Checks what serde cannot, naming the key (relative to this table) that is wrong.
    pub fn validate(&self) -> Result<(), GasConfigError> {
        let bad = |key, value: String, expected| GasConfigError::Invalid {
            key,
            value,
            expected,
        };
        if !(0.0..=2.0).contains(&self.revert_fraction) {
            return Err(bad(
                "revert_fraction",
                self.revert_fraction.to_string(),
                "in [0, 2]",
            ));
        }
        // The chain stores the Fjord scalars as uint32s: a larger value is a typo.
        for (key, v) in [
            ("l1.base_fee_scalar", self.l1.base_fee_scalar),
            ("l1.blob_base_fee_scalar", self.l1.blob_base_fee_scalar),
        ] {
            if u32::try_from(v).is_err() {
                return Err(bad(key, v.to_string(), "at most 4294967295 (a uint32)"));
            }
        }
        Ok(())
    }
}

/// A gas config value out of its range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GasConfigError {
    #[error("{key} = {value} must be {expected}")]
    Invalid {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// Fjord's regression from a transaction's FastLZ size to its share of a compressed batch, both
/// scaled by 1e6 (OP-stack specs, `protocol/fjord/exec-engine.md`).
const FJORD_INTERCEPT: u64 = 42_585_600; // subtracted: the spec's intercept is −42_585_600
const FJORD_FASTLZ_COEF: u64 = 836_500;
/// The spec's `minTransactionSize` (100 bytes), scaled by 1e6.
const FJORD_MIN_SIZE_SCALED: u64 = 100_000_000;

/// The Fjord L1 data fee of a transaction of `fastlz_size` FastLZ-compressed bytes:
///
/// ```text
/// estimatedSizeScaled = max(100 * 1e6, -42_585_600 + 836_500 * fastlz_size)
/// l1FeeScaled         = base_fee_scalar * l1_base_fee * 16 + blob_base_fee_scalar * blob_base_fee
/// fee                 = estimatedSizeScaled * l1FeeScaled / 1e12
/// ```
///
/// The scalars carry 6 decimals and so does the size, hence the 1e12.
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
        Self {
            // Ethereum in late 2025 / early 2026: an execution base fee around 1 gwei (it spent
            // most of 2025 between 0.2 and a few gwei), and a blob base fee held at its EIP-7918
            // reserve price, base fee × 2^13 / 2^17 = base fee / 16, since blob demand stays below
            // the Fusaka target. Both move every block: set them from the period you replay.
            l1_base_fee_wei: 1_000_000_000,
            blob_base_fee_wei: 62_500_000,
            // Base mainnet's SystemConfig scalars since the Fjord re-tune of 2024-07
            // (base/contract-deployments#188; unchanged in the 2025-01 SystemConfig upgrade,
            // superchain-ops eth/029).
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
        let per_leg = u128::from(self.fastlz_bytes_per_leg).saturating_mul(legs as u128);
        let fastlz = u128::from(self.fastlz_bytes_base).saturating_add(per_leg);
        self.fee_for_fastlz_size(fastlz)
    }

    /// The L1 data fee in wei of a transaction of `fastlz_size` compressed bytes; saturates at
    /// `u128::MAX` (no real fee comes near it).
    pub fn fee_for_fastlz_size(&self, fastlz_size: u128) -> u128 {
        // In U512 nothing can overflow: the scaled size is below 2^148 and the rate below 2^197.
        let size = U512::from(fastlz_size) * U512::from(FJORD_FASTLZ_COEF);
        let floor = U512::from(FJORD_MIN_SIZE_SCALED + FJORD_INTERCEPT);
        let size_scaled = if size < floor {
            U512::from(FJORD_MIN_SIZE_SCALED)
        } else {
            size - U512::from(FJORD_INTERCEPT)
        };
        let rate =
            U512::from(self.base_fee_scalar) * U512::from(self.l1_base_fee_wei) * U512::from(16)
                + U512::from(self.blob_base_fee_scalar) * U512::from(self.blob_base_fee_wei);
        let fee = size_scaled * rate / U512::from(1_000_000_000_000u64);
        u128::try_from(fee).unwrap_or(u128::MAX)
    }
}

/// Which operator fee formula the chain runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorFeeFormula {
    /// Isthmus: `gas_used * scalar / 1e6 + constant`.
    Isthmus,
    /// Jovian (Base since 2025-12): `gas_used * scalar * 100 + constant`.
    #[default]
    Jovian,
}

/// The OP-stack operator fee (Isthmus, rescaled by Jovian), set in the chain's SystemConfig
/// (`operatorFeeScalar` is a uint32, `operatorFeeConstant` a uint64, in wei). Both start at 0 and
/// Base leaves them there: 0 is its current setting.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorFeeConfig {
    pub scalar: u32,
    pub constant: u64,
    pub formula: OperatorFeeFormula,
}

impl OperatorFeeConfig {
    /// The operator fee in wei of a transaction that used `gas_used` gas (OP-stack specs,
    /// `protocol/isthmus/exec-engine.md` and the GasPriceOracle spec's Jovian formula).
    pub fn fee_wei(&self, gas_used: u64) -> u128 {
        // u64 × u32 × 100 < 2^103: no overflow in u128.
        let product = u128::from(gas_used) * u128::from(self.scalar);
        let variable = match self.formula {
            OperatorFeeFormula::Isthmus => product / 1_000_000,
            OperatorFeeFormula::Jovian => product * 100,
        };
        variable + u128::from(self.constant)
    }
}

/// What one transaction costs, in wei, by where the money goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxCost {
    /// Gas used × (base fee + priority fee).
    pub l2_wei: u128,
    /// The Fjord L1 data fee (0 off the OP stack).
    pub l1_wei: u128,
    /// The operator fee (0 off the OP stack, and on Base today).
    pub operator_wei: u128,
}

impl TxCost {
    /// Everything the sender pays; saturates rather than wrapping.
    pub fn total(&self) -> u128 {
        self.l2_wei
            .saturating_add(self.l1_wei)
            .saturating_add(self.operator_wei)
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

/// The cost of a bundle of `legs` legs that used `gas` gas, at the block's base fee (floored at the
/// chain's minimum; the default when `base_fee` is `None`) plus `priority_fee`.
pub fn cost_wei(
    cfg: &GasConfig,
    base_fee: Option<u128>,
    gas: u64,
    priority_fee: u128,
    legs: usize,
) -> TxCost {
    let price = cfg.base_fee_wei(base_fee).saturating_add(priority_fee);
    let l2_wei = u128::from(gas).saturating_mul(price);
    if !cfg.op_stack {
        return TxCost {
            l2_wei,
            ..TxCost::default()
        };
    }
    TxCost {
        l2_wei,
        l1_wei: cfg.l1.fee_wei(legs),
        operator_wei: cfg.operator.fee_wei(gas),
    }
}

/// [`cost_wei`] at `block`: its base fee, and on the OP stack the L1 fee inputs it carries (the
/// L1Block values in force there, recorded live or read from the data) instead of the
/// configured ones.
pub fn cost_at(
    cfg: &GasConfig,
    block: &BlockInfo,
    gas: u64,
    priority_fee: u128,
    legs: usize,
) -> TxCost {
    let mut cost = cost_wei(cfg, block.base_fee, gas, priority_fee, legs);
    if cfg.op_stack
        && let Some(l1) = block.l1
    {
        let at_block = L1FeeConfig {
            l1_base_fee_wei: l1.l1_base_fee_wei,
            blob_base_fee_wei: l1.blob_base_fee_wei,
            base_fee_scalar: l1.base_fee_scalar,
            blob_base_fee_scalar: l1.blob_base_fee_scalar,
            ..cfg.l1.clone()
        };
        cost.l1_wei = at_block.fee_wei(legs);
    }
    cost
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

    /// op-geth's Fjord vectors (`core/types/rollup_cost_test.go`, `TestFjordL1CostSolidityParity`
    /// and `TestFjordL1CostFuncMinimumBounds`): inputs and expected fees as published there, fed
    /// through a config whose whole FastLZ size is the vector's.
    #[test]
    fn l1_fee_matches_op_geth_fjord_vectors() {
        let fee = |fastlz: u64, l1: u128, blob: u128, scalar: u64, blob_scalar: u64| {
            L1FeeConfig {
                l1_base_fee_wei: l1,
                blob_base_fee_wei: blob,
                base_fee_scalar: scalar,
                blob_base_fee_scalar: blob_scalar,
                fastlz_bytes_base: fastlz,
                fastlz_bytes_per_leg: 0,
            }
            .fee_wei(1)
        };
        assert_eq!(fee(235, 2_000_000, 3_000_000, 20, 15), 105_484);
        // Below the regression's 100-byte floor every size costs the floor.
        for size in [100, 150, 170] {
            assert_eq!(
                fee(size, 1_000_000_000, 10_000_000, 2, 3),
                3_203_000,
                "{size}"
            );
        }
        for size in [171, 175, 200] {
            assert!(
                fee(size, 1_000_000_000, 10_000_000, 2, 3) > 3_203_000,
                "{size}"
            );
        }
    }

    #[test]
    fn l1_fee_cannot_overflow() {
        let huge = L1FeeConfig {
            l1_base_fee_wei: u128::MAX,
            blob_base_fee_wei: u128::MAX,
            base_fee_scalar: u64::MAX,
            blob_base_fee_scalar: u64::MAX,
            fastlz_bytes_base: u64::MAX,
            fastlz_bytes_per_leg: u64::MAX,
        };
        assert_eq!(huge.fee_wei(usize::MAX), u128::MAX);
        let cfg = GasConfig {
            l1: huge,
            ..GasConfig::default()
        };
        let c = cost_wei(&cfg, Some(u128::MAX), u64::MAX, u128::MAX, 2);
        assert_eq!((c.l2_wei, c.total()), (u128::MAX, u128::MAX));
    }

    #[test]
    fn operator_fee_follows_isthmus_and_jovian() {
        let op = |scalar, constant, formula| OperatorFeeConfig {
            scalar,
            constant,
            formula,
        };
        // Isthmus: the scalar has 6 decimals and the division floors.
        let isthmus = op(1_500_000, 7, OperatorFeeFormula::Isthmus);
        assert_eq!(isthmus.fee_wei(100_000), 150_007);
        assert_eq!(op(1, 0, OperatorFeeFormula::Isthmus).fee_wei(999_999), 0);
        // Jovian: the scalar counts hundreds of wei per gas.
        assert_eq!(
            op(3, 7, OperatorFeeFormula::Jovian).fee_wei(100_000),
            30_000_007
        );
        assert_eq!(
            op(u32::MAX, u64::MAX, OperatorFeeFormula::Jovian).fee_wei(u64::MAX),
            u128::from(u64::MAX) * u128::from(u32::MAX) * 100 + u128::from(u64::MAX)
        );
        // Base charges none.
        assert_eq!(OperatorFeeConfig::default().fee_wei(1_000_000), 0);
    }

    #[test]
    fn cost_splits_by_recipient_and_sums() {
        let cfg = GasConfig {
            operator: OperatorFeeConfig {
                scalar: 2,
                constant: 1_000,
                formula: OperatorFeeFormula::Jovian,
            },
            ..GasConfig::default()
        };
        let c = cost_wei(&cfg, Some(20_000_000), 200_000, 1_000_000, 2);
        assert_eq!(c.l2_wei, 200_000 * 21_000_000);
        assert_eq!(c.l1_wei, cfg.l1.fee_wei(2));
        assert_eq!(c.operator_wei, 200_000 * 2 * 100 + 1_000);
        assert_eq!(c.total(), c.l2_wei + c.l1_wei + c.operator_wei);
        // Off the OP stack only L2 gas is paid.
        let l1_chain = GasConfig {
            op_stack: false,
            ..cfg
        };
        let c = cost_wei(&l1_chain, Some(20_000_000), 200_000, 1_000_000, 2);
        assert_eq!((c.l1_wei, c.operator_wei, c.total()), (0, 0, c.l2_wei));
    }

    #[test]
    fn a_block_that_carries_its_l1_fees_is_charged_those() {
        let cfg = GasConfig::default();
        let mut block = BlockInfo {
            number: 1,
            base_fee: Some(20_000_000),
            ..BlockInfo::default()
        };
        // Without per-block values: the configured ones.
        assert_eq!(
            cost_at(&cfg, &block, 200_000, 0, 2),
            cost_wei(&cfg, Some(20_000_000), 200_000, 0, 2)
        );
        // With them: a blob fee ten times the configured one costs more, by the formula.
        let l1 = crate::market::L1BlockFees {
            l1_base_fee_wei: cfg.l1.l1_base_fee_wei,
            blob_base_fee_wei: cfg.l1.blob_base_fee_wei * 10,
            base_fee_scalar: cfg.l1.base_fee_scalar,
            blob_base_fee_scalar: cfg.l1.blob_base_fee_scalar,
        };
        block.l1 = Some(l1);
        let want = L1FeeConfig {
            blob_base_fee_wei: cfg.l1.blob_base_fee_wei * 10,
            ..cfg.l1.clone()
        }
        .fee_wei(2);
        let c = cost_at(&cfg, &block, 200_000, 0, 2);
        assert_eq!(c.l1_wei, want);
        assert!(c.l1_wei > cfg.l1.fee_wei(2));
        // Off the OP stack there is no L1 fee to charge.
        let l1_chain = GasConfig {
            op_stack: false,
            ..cfg
        };
        assert_eq!(cost_at(&l1_chain, &block, 200_000, 0, 2).l1_wei, 0);
    }

    #[test]
    fn base_fee_is_floored_at_the_chain_minimum() {
        let cfg = GasConfig {
            min_base_fee_wei: 5_000_000,
            default_base_fee_wei: 1_000,
            ..GasConfig::default()
        };
        // A devnet-like 7 wei block, and a header without a base fee, both pay the floor.
        assert_eq!(cfg.base_fee_wei(Some(7)), 5_000_000);
        assert_eq!(cfg.base_fee_wei(None), 5_000_000);
        assert_eq!(cfg.base_fee_wei(Some(6_000_000)), 6_000_000);
        assert_eq!(cost_wei(&cfg, Some(7), 100, 0, 1).l2_wei, 100 * 5_000_000);
        let no_floor = GasConfig {
            min_base_fee_wei: 0,
            ..cfg
        };
        assert_eq!(no_floor.base_fee_wei(Some(7)), 7);
    }

    #[test]
    fn validate_names_the_bad_key() {
        GasConfig::default().validate().unwrap();
        for v in [f64::NAN, -0.1, 2.01, f64::INFINITY] {
            let e = GasConfig {
                revert_fraction: v,
                ..GasConfig::default()
            }
            .validate()
            .unwrap_err();
            assert!(e.to_string().starts_with("revert_fraction = "), "{e}");
        }
        let mut cfg = GasConfig::default();
        cfg.l1.blob_base_fee_scalar = u64::from(u32::MAX) + 1;
        let e = cfg.validate().unwrap_err();
        assert!(
            e.to_string()
                .starts_with("l1.blob_base_fee_scalar = 4294967296"),
            "{e}"
        );
    }
}
