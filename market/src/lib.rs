//! dexlab-market: the exact state of every tracked pool, and the one step that turns a pool event
//! into a state change, shared by the backtester, the data checks and the live engine.
//!
//! A [`Market`] holds each pool's static facts ([`PoolMeta`]) and exact state ([`PoolState`]:
//! V2 reserves, a Solidly pool, or a V3 pool with its tick map), plus the current [`BlockInfo`].
//! Pool events arrive as [`PoolEvent`]s, whatever their source (a dataset replayed from Parquet,
//! or logs read from a node block by block); [`apply`] sets a pool to the state history records
//! after the event, and [`replay_flow`] re-executes the event's flow on a pool our own trades
//! have moved (the backtester's counterfactual replay). [`fees`] recovers the fee each swap paid
//! where a pool's fee can change (Aerodrome's fee manager, Slipstream's fee modules), so that the
//! state's fee, [`Market::fee`], is the one in force rather than the listed one. Turning raw logs into [`PoolEvent`]s is
//! `dexlab-data`'s job (it owns ABI decoding); so is checking swaps against the chain.
//!
//! Amounts are integers in the token's smallest unit, priced by `dexlab-amm`'s exact pool math;
//! floats appear only in mid prices for signals and reports. Depends on `dexlab-amm`,
//! `alloy-primitives` and `serde` only.
//!
//! No cargo features.

pub mod fees;
mod state;
pub mod update;

pub use state::{
    BlockInfo, Family, L1BlockFees, Market, PairSpread, PoolMeta, PoolState, Quote, from_human,
    signed_to_human, to_human, u256_to_f64,
};
pub use update::{PaidFee, PoolEvent, SwapIn, Update, apply, apply_state, replay_flow};
