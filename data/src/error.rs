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
    /// Something wrong with a whole input file (no one line to blame).
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
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
    /// A value the dataset cannot store in its column's type (block numbers, transaction and log
    /// indices are u32): refused, never truncated or saturated.
    #[error("{at}: `{field}` {value} does not fit the dataset's {ty} column")]
    OutOfRange {
        at: String,
        field: &'static str,
        value: u64,
        ty: &'static str,
    },
    /// The dataset's self-check found missing tables or damaged files (see
    /// [`crate::dataset::check`]).
    #[error("dataset {path} cannot be used: {}", list_problems(problems))]
    Damaged {
        path: PathBuf,
        problems: Vec<crate::dataset::Problem>,
    },
}

fn list_problems(problems: &[crate::dataset::Problem]) -> String {
    let mut s = format!("{} problem(s)", problems.len());
    for p in problems {
        s.push_str("\n  ");
        s.push_str(&p.to_string());
    }
    s
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
