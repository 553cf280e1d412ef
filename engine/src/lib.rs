//! dexlab-engine: the runtime that backtest, paper and live trading share.
//!
//! A block source (a dataset replayed from its [`tape::Tape`], a recorded [`session`], or the
//! node feed of the live engine) yields blocks of pool events. The [`driver::Driver`] applies
//! them to the shared market (`dexlab-market`) through an [`driver::Executor`], calls the
//! strategy (`dexlab-strategy`, the same code in every mode) on each block's final state, and
//! reserves what the strategy sends in the [`ledger::Ledger`] before putting it in flight. The
//! executor is the seam between simulated fills ([`sim::SimExecutor`]: exact pool math where
//! the chain would land the bundle, a rival, counterfactual replay; used by backtests and paper
//! trading) and fills on chain ([`chain::ChainExecutor`]: the chain's own logs and the outcomes
//! the live engine read from receipts, recorded so that a live session replays too). Every bundle has an id and exactly one
//! outcome: filled, reverted, rejected or expired.
//!
//! [`backtest`] is the driver over a tape, and documents the execution model every result rests
//! on; [`config`] is its TOML section; [`session`] records a paper or live run block by block
//! and replays it through the same driver, decision for decision.
//!
//! No Polars, no burn, no genevo, no tokio: the genetic optimiser (`dexlab-evolve`), the live
//! engine and the server all link this crate. Datasets are read through `dexlab-data`.
//!
//! Cargo feature `test-utils`: fixtures (hand-built tapes, a test execution config, the real
//! sample) for this crate's tests and the crates built on it.

pub mod backtest;
pub mod chain;
pub mod config;
pub mod driver;
pub mod ledger;
pub mod metrics;
pub mod risk;
pub mod session;
pub mod sim;
pub mod tape;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
