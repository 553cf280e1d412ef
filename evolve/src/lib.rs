//! dexlab-evolve: the backtester with the execution costs a real searcher pays, and the genetic
//! optimiser (genevo over a rayon pool) with walk-forward validation.
//!
//! A dataset is decoded once into a [`tape::Tape`] of pool-state updates; [`backtest::run`] replays
//! a window of it through a `dexlab-strategy` strategy (the same code the live engine runs) and
//! fills its bundles with exact pool math at the inclusion block, charging LP fees, L2 gas and the
//! OP-stack L1 fee, reverting unprofitable bundles (gas still paid), racing a competitor, and
//! enforcing balances. [`optimise`] tunes a strategy's typed parameters with genevo, fitness
//! evaluated across the installed rayon pool; [`walkforward`] runs it fold by fold, out of sample,
//! next to no-trading, default-parameter and equal-budget random-search baselines, checkpointing
//! every generation. Same tape, config and seed give bit-identical results whatever the thread
//! count.
//!
//! No Polars and no burn. Datasets are read through `dexlab-data` (which brings alloy); the
//! strategies themselves live in `dexlab-strategy`, which needs neither alloy's providers nor tokio.
//!
//! No cargo features.

pub mod config;
pub mod error;
pub mod optimise;
pub mod walkforward;

/// The backtester lives in `dexlab-engine` (the runtime backtest, paper and live trading share);
/// re-exported here so research code keeps one import path.
pub use dexlab_engine::{backtest, metrics, tape};

pub use error::{EvolveError, Result};
