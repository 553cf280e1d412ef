//! dexlab-amm: the integer-exact pool math every money path of dexlab uses.
//!
//! Each module reproduces its contract's arithmetic to the last wei, rounding included:
//! [`v2`] (Uniswap V2 and forks, with each DEX's fee), [`v3`] (Uniswap V3 and PancakeSwap V3: full
//! swaps across initialized ticks, exact input and exact output, price limits, built on
//! [`tick_math`], [`sqrt_price_math`] and [`swap_math`]), [`slipstream`] (Aerodrome Slipstream:
//! the V3 swap plus the split of its fee between unstaked LPs and the gauge) and [`solidly`]
//! (Aerodrome/Velodrome volatile and stable pools). Values are `U256`/`I256`; nothing here is a
//! float.
//!
//! The crate depends only on `alloy-primitives`, so the backtester and the live engine can use it
//! without pulling in Polars, burn or an RPC stack. The proof of exactness is the end-to-end test
//! that replays thousands of random swaps through the real deployed contracts.
//!
//! No cargo features.

pub mod full_math;
pub mod slipstream;
pub mod solidly;
pub mod sqrt_price_math;
pub mod swap_math;
pub mod tick_math;
pub mod v2;
pub mod v3;

pub use alloy_primitives::{I256, U256};

/// Why a computation cannot be carried out; each mirrors a revert of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MathError {
    #[error("overflow")]
    Overflow,
    #[error("division by zero")]
    DivisionByZero,
    #[error("tick out of range")]
    TickOutOfRange,
    #[error("tick spacing must be in (0, 16384)")]
    InvalidTickSpacing,
    #[error("tick is not a multiple of the pool's tick spacing")]
    TickNotOnSpacing,
    #[error("sqrt price out of range")]
    SqrtPriceOutOfRange,
    #[error("insufficient liquidity")]
    InsufficientLiquidity,
    #[error("price limit on the wrong side of the current price or out of range")]
    InvalidPriceLimit,
    #[error("amount specified is zero")]
    ZeroAmount,
    #[error("liquidity delta underflows or overflows")]
    LiquidityMath,
    #[error("stable-pool solver did not converge")]
    NoConvergence,
}

pub type Result<T> = std::result::Result<T, MathError>;
