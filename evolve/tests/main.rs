//! Scenario tests of the optimiser and of bad input to it; the backtester's own scenarios are
//! `dexlab-engine`'s tests.

mod bad_input;
mod optimiser;
mod support;
