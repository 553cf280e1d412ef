//! dexlab-types: the types that cross dexlab's crates, serde-only.
//!
//! What one crate writes and another reads (the backtester's metrics and equity curve, a model's
//! test metrics, the names of experiment statuses, run kinds, model and agent kinds, trading
//! sessions' modes and statuses) lives here once, so that the store, the backtester, the model
//! trainer, the lab library, the report, and later the server and the live engine agree on one
//! shape without depending on each other. The crates that used to define them re-export them
//! from their old paths.
//!
//! Names are enums, not free strings: each has exactly one spelling, which is what serde writes
//! and reads and what the store's text columns hold (the spellings are those the columns always
//! held, so existing databases need no migration); `FromStr` also takes any case and a few
//! aliases, for command-line flags. Every type round-trips through serde (`tests/`).
//!
//! Depends on serde only: no I/O, no async runtime, no chain or ML stack.
//!
//! No cargo features.

pub mod backtest;
mod kinds;
pub mod predict;

pub use backtest::EquityPoint;
pub use kinds::{
    AgentKind, ExperimentStatus, ModelKind, ParseError, RegisteredKind, RegisteredTask, RunKind,
    SessionMode, SessionStatus, Task,
};
