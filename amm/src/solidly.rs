//! Solidly-style pools as Aerodrome's (Velodrome V2's) `Pool` contract computes them.
//!
//! Volatile pools are x·y = k; stable pools are x³y + xy³ = k on reserves normalised to 18
//! decimals, solved for the output with the contract's Newton iteration (`_get_y`), including its
//! integer rounding and its `y + 1` / `y - 1` termination rules. The fee is taken from the input
//! first: `amountIn -= amountIn * fee / 10_000` (fee in basis points; here in pips, which gives the
//! same floor).
//!
//! The fee does not stay in the pool: `swap` sends `amountIn * fee / 10_000` of the input token to
//! the pool's `PoolFees` contract before it syncs, so the input reserve grows by the input less the
//! fee ([`SolidlyPool::swap_exact_in`]).

use alloy_primitives::U256;

use crate::{MathError, Result};

fn e18() -> U256 {
    U256::from(1_000_000_000_000_000_000u64)
}

/// A Solidly pool's pricing state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SolidlyPool {
    pub reserve0: U256,
    pub reserve1: U256,
    /// 10^decimals of each token.
    pub decimals0: U256,
    pub decimals1: U256,
    pub stable: bool,
    /// Fee in pips (Aerodrome's basis points × 100).
    pub fee: u32,
}

fn mul(a: U256, b: U256) -> Result<U256> {
    a.checked_mul(b).ok_or(MathError::Overflow)
}

impl SolidlyPool {
    pub fn new(reserve0: U256, reserve1: U256, dec0: u8, dec1: u8, stable: bool, fee: u32) -> Self {
        let p = |d: u8| U256::from(10u64).pow(U256::from(d));
        Self {
            reserve0,
            reserve1,
            decimals0: p(dec0),
            decimals1: p(dec1),
            stable,
            fee,
        }
    }

    /// The invariant `_k(x, y)` of the contract.
    pub fn k(&self, x: U256, y: U256) -> Result<U256> {
        if self.stable {
            let x = mul(x, e18())? / self.decimals0;
            let y = mul(y, e18())? / self.decimals1;
            let a = mul(x, y)? / e18();
            let b = mul(x, x)? / e18() + mul(y, y)? / e18();
            Ok(mul(a, b)? / e18())
        } else {
            mul(x, y)
        }
    }

    fn f(x0: U256, y: U256) -> Result<U256> {
        let a = mul(x0, y)? / e18();
        let b = mul(x0, x0)? / e18() + mul(y, y)? / e18();
        Ok(mul(a, b)? / e18())
    }

    fn d(x0: U256, y: U256) -> Result<U256> {
        Ok(mul(mul(U256::from(3), x0)?, mul(y, y)? / e18())? / e18()
            + mul(mul(x0, x0)? / e18(), x0)? / e18())
    }

    fn get_y(&self, x0: U256, xy: U256, mut y: U256) -> Result<U256> {
        for _ in 0..255 {
            let k = Self::f(x0, y)?;
            if k < xy {
                let d = Self::d(x0, y)?;
                if d.is_zero() {
                    return Err(MathError::DivisionByZero);
                }
                let mut dy = mul(xy - k, e18())? / d;
                if dy.is_zero() {
                    if k == xy {
                        return Ok(y);
                    }
                    // The contract calls `_k` here (it normalises again by the decimals).
                    if self.k(x0, y + U256::from(1))? > xy {
                        return Ok(y + U256::from(1));
                    }
                    dy = U256::from(1);
                }
                y += dy;
            } else {
                let d = Self::d(x0, y)?;
                if d.is_zero() {
                    return Err(MathError::DivisionByZero);
                }
                let mut dy = mul(k - xy, e18())? / d;
                if dy.is_zero() {
                    if k == xy || Self::f(x0, y - U256::from(1))? < xy {
                        return Ok(y);
                    }
                    dy = U256::from(1);
                }
                y = y.checked_sub(dy).ok_or(MathError::NoConvergence)?;
            }
        }
        Err(MathError::NoConvergence)
    }

    /// The part of `amount_in` the pool moves out to its `PoolFees` contract (`_update0`/`_update1`).
    pub fn fee_amount(&self, amount_in: U256) -> Result<U256> {
        Ok(mul(amount_in, U256::from(self.fee))? / U256::from(1_000_000u32))
    }

    /// A swap of `amount_in` as the pool executes it: pays [`Self::get_amount_out`] and keeps the
    /// input less [`Self::fee_amount`] in its reserves, as its `Sync` reports them. Leaves the pool
    /// unchanged on error.
    pub fn swap_exact_in(&mut self, amount_in: U256, zero_for_one: bool) -> Result<U256> {
        let out = self.get_amount_out(amount_in, zero_for_one)?;
        let kept = amount_in - self.fee_amount(amount_in)?;
        let (rin, rout) = if zero_for_one {
            (&mut self.reserve0, &mut self.reserve1)
        } else {
            (&mut self.reserve1, &mut self.reserve0)
        };
        let new_in = rin.checked_add(kept).ok_or(MathError::Overflow)?;
        let new_out = rout
            .checked_sub(out)
            .ok_or(MathError::InsufficientLiquidity)?;
        *rin = new_in;
        *rout = new_out;
        Ok(out)
    }

    /// The marginal price of token0 in token1 (raw units, before the fee), in floats: for
    /// signals and simulated traders only, never for amounts. Volatile: `reserve1 / reserve0`;
    /// stable: `-dy/dx` of x³y + xy³ = k on the 18-decimal reserves,
    /// `(3x²y + y³) / (x³ + 3xy²)`, scaled back to raw units.
    pub fn marginal_price(&self) -> f64 {
        let f = |x: U256| f64::from(x);
        if !self.stable {
            return f(self.reserve1) / f(self.reserve0);
        }
        let x = f(self.reserve0) / f(self.decimals0);
        let y = f(self.reserve1) / f(self.decimals1);
        (3.0 * x * x * y + y * y * y) / (x * x * x + 3.0 * x * y * y) * f(self.decimals1)
            / f(self.decimals0)
    }

    /// `getAmountOut(amountIn, tokenIn)`: `zero_for_one` sells token0.
    pub fn get_amount_out(&self, amount_in: U256, zero_for_one: bool) -> Result<U256> {
        self.amount_out_after_fee(amount_in - self.fee_amount(amount_in)?, zero_for_one)
    }

    /// `_getAmountOut`: the output for an input the fee has already been taken from. With the fee
    /// a swap actually paid (its `Fees` event), this prices the swap whatever fee the pool's
    /// metadata says, which a factory's fee manager can change at any block.
    pub fn amount_out_after_fee(&self, amount_in: U256, zero_for_one: bool) -> Result<U256> {
        let (r0, r1) = (self.reserve0, self.reserve1);
        if self.stable {
            let xy = self.k(r0, r1)?;
            let r0n = mul(r0, e18())? / self.decimals0;
            let r1n = mul(r1, e18())? / self.decimals1;
            let (ra, rb) = if zero_for_one { (r0n, r1n) } else { (r1n, r0n) };
            let ain = if zero_for_one {
                mul(amount_in, e18())? / self.decimals0
            } else {
                mul(amount_in, e18())? / self.decimals1
            };
            let y = rb
                .checked_sub(self.get_y(ain + ra, xy, rb)?)
                .ok_or(MathError::InsufficientLiquidity)?;
            Ok(mul(
                y,
                if zero_for_one {
                    self.decimals1
                } else {
                    self.decimals0
                },
            )? / e18())
        } else {
            let (ra, rb) = if zero_for_one { (r0, r1) } else { (r1, r0) };
            let den = ra.checked_add(amount_in).ok_or(MathError::Overflow)?;
            if den.is_zero() {
                return Err(MathError::InsufficientLiquidity);
            }
            Ok(mul(amount_in, rb)? / den)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn pools() -> Vec<SolidlyPool> {
        vec![
            // USDC/USDbC-like stable pool, 6/6 decimals, 0.05 %.
            SolidlyPool::new(
                U256::from(12_000_000_000_000u64),
                U256::from(11_500_000_000_000u64),
                6,
                6,
                true,
                500,
            ),
            // DAI/USDC stable, 18/6 decimals.
            SolidlyPool::new(
                U256::from(5_000_000u64) * e18(),
                U256::from(5_100_000_000_000u64),
                18,
                6,
                true,
                500,
            ),
            // WETH/USDC volatile, 0.30 %.
            SolidlyPool::new(
                U256::from(3_000u64) * e18(),
                U256::from(9_000_000_000_000u64),
                18,
                6,
                false,
                3000,
            ),
        ]
    }

    #[test]
    fn swaps_never_decrease_k_and_are_monotone() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for p in pools() {
            for _ in 0..2_000 {
                let zfo = rng.random_bool(0.5);
                let rin = if zfo { p.reserve0 } else { p.reserve1 };
                // From 1 wei to 3x the input reserve.
                let exp = rng.random_range(0.0..(f64::from(rin) * 3.0).log10());
                let a = U256::from(10f64.powf(exp) as u128).max(U256::from(1));
                let out = p.get_amount_out(a, zfo).unwrap();
                // The pool's own check, after the fee has left for PoolFees.
                let mut after = p;
                assert_eq!(after.swap_exact_in(a, zfo).unwrap(), out);
                let fee = p.fee_amount(a).unwrap();
                let (n0, n1) = if zfo {
                    (p.reserve0 + a - fee, p.reserve1 - out)
                } else {
                    (p.reserve0 - out, p.reserve1 + a - fee)
                };
                assert_eq!((after.reserve0, after.reserve1), (n0, n1));
                assert!(
                    p.k(n0, n1).unwrap() >= p.k(p.reserve0, p.reserve1).unwrap(),
                    "k decreased: {p:?} {a} {zfo}"
                );
                let more = p
                    .get_amount_out(a + a / U256::from(10) + U256::from(1), zfo)
                    .unwrap();
                assert!(more >= out);
                assert!(out < if zfo { p.reserve1 } else { p.reserve0 });
            }
        }
    }

    #[test]
    fn stable_pool_trades_near_par_and_volatile_near_spot() {
        let p = pools()[0];
        let out = p
            .get_amount_out(U256::from(1_000_000_000u64), true)
            .unwrap(); // 1 000 USDC
        let ratio = f64::from(out) / 1e9;
        assert!(ratio > 0.998 && ratio < 1.0005, "{ratio}");
        let v = pools()[2];
        let out = v.get_amount_out(e18(), true).unwrap();
        let px = f64::from(out) / 1e6;
        assert!(px > 2980.0 && px < 2992.0, "{px}");
    }
}
