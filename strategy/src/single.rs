//! One-swap bundles: how the long/flat strategies (`price-reversion`, `model-gated`, the RL
//! agents) turn "buy" or "sell" into an exact, slippage-bounded bundle with its gas bid.

use alloy_primitives::{Address, U256};

use crate::arb::scale;
use crate::gas::{bundle_gas, convert, cost_at};
use crate::market::Market;
use crate::{Bundle, BundleTag, Context, Leg};

/// How a strategy sends single swaps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SwapPlan {
    /// The bundle reverts if it gets less than the quote minus this.
    pub slippage_bps: f64,
    /// Total gas price bid as a multiple of the base fee.
    pub gas_multiplier: f64,
    /// Skip a trade whose gas exceeds this many bps of its notional (`None`: never skip).
    pub max_gas_bps: Option<u32>,
}

impl SwapPlan {
    /// Sells `amount_in` of `token_in` in `pool`, valued against `quote`; `None` when the pool
    /// cannot quote it or the gas rule says no. Tagged `buy` when it spends `quote`.
    pub fn bundle(
        &self,
        market: &Market,
        ctx: &Context<'_>,
        pool: usize,
        token_in: Address,
        amount_in: U256,
        quote: Address,
    ) -> Option<Bundle> {
        let q = market.quote(pool, token_in, amount_in)?;
        let base_fee = ctx.env.gas.base_fee_wei(market.block.base_fee);
        let priority_fee = (base_fee as f64 * (self.gas_multiplier - 1.0)) as u128;
        if let Some(max) = self.max_gas_bps {
            let gas = bundle_gas(&ctx.env.gas, market, &[pool], q.ticks_crossed);
            let cost = cost_at(&ctx.env.gas, &market.block, gas, priority_fee, 1);
            let gas_quote = convert(market, U256::from(cost.total()), ctx.env.native, quote)?;
            let notional = convert(market, amount_in, token_in, quote)?;
            if gas_quote * U256::from(10_000u32) > notional * U256::from(max) {
                return None;
            }
        }
        Some(Bundle {
            legs: vec![Leg { pool, token_in }],
            amount_in,
            min_amount_out: q.amount_out - scale(q.amount_out, self.slippage_bps / 1e4),
            priority_fee,
            expected_out: q.amount_out,
            tag: if token_in == quote {
                BundleTag::Buy
            } else {
                BundleTag::Sell
            },
        })
    }

    /// The long/flat decision the single-pool strategies share: when flat and `enter` says
    /// how much, buy `base` with that fraction of the quote balance; when holding and `exit`,
    /// sell the whole position; otherwise nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn long_flat(
        &self,
        market: &Market,
        ctx: &Context<'_>,
        pool: usize,
        base: Address,
        quote: Address,
        enter: Option<f64>,
        exit: bool,
    ) -> Option<Bundle> {
        let held = ctx.balance(base);
        match enter {
            Some(fraction) if held.is_zero() => {
                let amount = scale(ctx.balance(quote), fraction);
                (!amount.is_zero())
                    .then(|| self.bundle(market, ctx, pool, quote, amount, quote))
                    .flatten()
            }
            _ if exit && !held.is_zero() => self.bundle(market, ctx, pool, base, held, quote),
            _ => None,
        }
    }
}
