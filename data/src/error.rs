//! Errors of the data layer. Every variant says where the problem was.

use std::path::PathBuf;

use crate::types::LogLocation;

/// Result alias for the data layer.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: parquet: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{path}: arrow: {source}")]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: column `{column}`: {message}")]
    Column {
        path: PathBuf,
        column: String,
        message: String,
    },
    #[error("malformed log at {location}: {message}")]
    MalformedLog {
        location: LogLocation,
        message: String,
    },
    #[error("rpc {method} failed: {message}")]
    Rpc {
        method: String,
        attempts: u32,
        message: String,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("chain tooling: {0}")]
    Tooling(String),
    #[error("devnet: {0}")]
    Devnet(String),
    #[error("dataset {path}: {message}")]
    Dataset { path: PathBuf, message: String },
    #[error("{path} is being written by {holder}: wait for it to finish or stop it")]
    Locked { path: PathBuf, holder: String },
    #[error(
        "{path} already holds {what}: pass --force to replace it (atomically), or choose another output folder"
    )]
    OutputExists { path: PathBuf, what: String },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
