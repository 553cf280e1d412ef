//! dexlab-models scenarios, one module per scenario, one test binary.

mod support;

mod predictions;
mod real_sample;
mod reproducibility;
mod schema;
mod synthetic;
mod throughput;
