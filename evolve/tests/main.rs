//! Scenario tests of the backtester and the optimiser: hand-built tapes where every fill can be
//! checked against the pool formulas, and the real USDC/WETH sample for determinism.

mod bad_input;
mod execution;
mod honest;
mod optimiser;
mod support;
