//! dexlab-models scenarios, one module per scenario, one test binary.

mod support;

mod leakage;
mod predictions;
mod real_sample;
mod reproducibility;
mod schema;
mod synthetic;
mod throughput;
