//! dexlab-live against real anvil nodes running the devnet's market: one test binary, one module
//! per scenario.

mod support;

mod bootstrap;
mod devnet;
mod disconnect;
mod executor;
mod feed;
mod paper;
mod reorg;
mod signer;
