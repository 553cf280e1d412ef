//! dexlab-lab: the lab as a library — experiments, the model registry, RL agents and report
//! inputs — shared by the `dexlab` CLI, the server and the live engine.
//!
//! Every call takes typed inputs (request structs, a [`Store`](dexlab_store::Store)) and returns
//! typed results; nothing here prints, parses arguments or ends the process. Long work reports
//! what it is doing through a [`Progress`] callback; errors are [`LabError`], which says what
//! was refused and where (experiment, model, directory, store). Calls that only read the store are
//! `async`; the ones that run an experiment or a training are CPU-bound and synchronous, blocking
//! on a tokio [`Handle`](tokio::runtime::Handle) for the store, so an async caller runs them on a
//! blocking thread.
//!
//! # Design
//! The directory is the artifact (a model, an agent, an experiment's checkpoint) and the store is
//! the index: rows point at directories and carry their content hash, and nothing is registered
//! or resumed unless it is what the row says. An evolve checkpoint belongs to one experiment of
//! one store and is resumed only there ([`evolve`]). The types that cross crates (metrics, run
//! kinds, statuses, model kinds) come from `dexlab-types`.
//!
//! # Cargo features
//! Without features the crate reads: experiments and their shown state ([`experiments`]), report
//! inputs ([`report`]), the model registry and what a directory holds ([`registry`]). It links
//! neither genevo nor burn, so the server can depend on it with `default-features = false` (the
//! default is no features).
//! - `models`: reload and check model and agent directories ([`model_dir`]; burn, through
//!   `dexlab-models`).
//! - `evolve`: backtests ([`backtest`]) and walk-forward evolve experiments ([`evolve`]): genevo
//!   and rayon (through `dexlab-evolve`), datasets (`dexlab-data`). Implies `models`, for
//!   model-driven strategies.
//! - `train`: train predictive models into the registry ([`train`]; burn's training loop).
//! - `rl`: train and evaluate RL agents in the backtester ([`rl`]) and reload a trading agent from
//!   its directory ([`agent`]). Implies `evolve` and `train`.
//! - `promote`: promote an experiment to a deployment ([`promote`]): risk limits and the dataset's
//!   pools through `dexlab-engine` and `dexlab-data` (neither links Polars, burn or genevo).
//! - `accounts`: argon2id password hashes and users added with an audit row ([`accounts`]).

pub mod error;
pub mod experiments;
pub mod progress;
pub mod registry;
pub mod report;

#[cfg(feature = "models")]
pub mod model_dir;

#[cfg(feature = "evolve")]
pub mod backtest;
#[cfg(feature = "evolve")]
pub mod evolve;
#[cfg(feature = "evolve")]
pub mod model;

#[cfg(feature = "train")]
pub mod train;

#[cfg(feature = "distributed")]
pub mod distributed;

#[cfg(feature = "promote")]
pub mod promote;

#[cfg(feature = "accounts")]
pub mod accounts;

#[cfg(feature = "backup")]
pub mod backup;

#[cfg(feature = "rl")]
pub mod agent;
#[cfg(feature = "rl")]
pub mod rl;

pub use error::{LabError, Result};
pub use progress::{Event, Progress, Silent};

/// Whether a command writes the store or only reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Created if missing (`evolve`, `train`, `rl train`).
    Write,
    /// Must exist; nothing is created (`experiments`, `models`, `report`).
    Read,
}

/// The store of `DATABASE_URL` (default `./dexlab.sqlite`), opened for `access`.
pub async fn open_store(access: Access) -> Result<dexlab_store::Store> {
    let cwd = std::env::current_dir().map_err(|e| LabError::io(".", e))?;
    let url = dexlab_store::Store::url_from_env(&cwd);
    Ok(match access {
        Access::Write => dexlab_store::Store::connect(&url).await?,
        Access::Read => dexlab_store::Store::open_existing(&url).await?,
    })
}

/// An error and its sources, `: `-separated (as `anyhow` prints them with `{:#}`).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The first 12 hex digits of a hash, enough to tell hashes apart.
pub fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}
