//! The engine's fixtures.

pub use dexlab_engine::test_utils::*;
