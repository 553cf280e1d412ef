//! Scenario tests of the runtime: hand-built tapes where every fill can be checked against the
//! pool formulas, the bundle life cycle, sessions, and the real USDC/WETH sample for determinism.

mod execution;
mod honest;
mod lifecycle;

use dexlab_engine::test_utils as support;
