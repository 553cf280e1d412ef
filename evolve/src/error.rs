//! Errors of the backtester and the optimiser, each saying where it happened.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvolveError {
    #[error(transparent)]
    Data(#[from] dexlab_data::DataError),
    #[error("{0}")]
    Strategy(#[from] dexlab_strategy::registry::RegistryError),
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("config: {0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("the dataset has {blocks} blocks: too few for {folds} walk-forward folds")]
    TooFewBlocks { blocks: usize, folds: usize },
    /// Blocks with events too few, or none in a window: the optimiser would tune on nothing.
    #[error("{0}")]
    EmptyWindows(String),
    /// Fitness computed elsewhere (workers) failed or never came back.
    #[error("remote evaluation: {0}")]
    Remote(String),
    #[error("genetic algorithm, fold {} generation {generation}: {message}", fold + 1)]
    Optimiser {
        fold: usize,
        generation: usize,
        message: String,
    },
}

pub type Result<T, E = EvolveError> = std::result::Result<T, E>;
