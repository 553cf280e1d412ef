//! End-to-end scenarios: the `dexlab` binary against a real anvil with the real DEX bytecode.
//! One test binary, one module per scenario.

mod support;

mod backup;
mod bad_input;
mod browser;
mod chain;
mod config_reference;
mod dashboard;
mod demo;
mod distributed;
mod evolve;
mod exactness;
mod executor_deploy;
mod import;
mod ingest;
mod jobs;
mod live;
mod model_gated;
mod model_window;
mod models_registry;
mod notebooks;
mod online_features;
mod paper;
mod promote;
mod resume_store;
mod rl;
mod serve;
mod users;
