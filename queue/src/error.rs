use std::path::PathBuf;

/// What went wrong with the queue, saying where.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot reach NATS at {url}: {message} (start one with `nats-server -js`)")]
    Connect { url: String, message: String },
    #[error("NATS at {url}: cannot set up {what}: {message}")]
    Setup {
        url: String,
        what: String,
        message: String,
    },
    #[error("NATS: {what}: {message}")]
    Nats { what: String, message: String },
    #[error(
        "bundle {hash} is not in the object store `{bucket}` of {url}: the dataset or model was \
         never uploaded there, or it was deleted; rerun the submitting command, which uploads it"
    )]
    BundleMissing {
        hash: String,
        bucket: &'static str,
        url: String,
    },
    #[error("bundle {hash}: {message}")]
    BundleCorrupt { hash: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no result for {outstanding} of {total} tasks in {waited_secs} s (`{kind}` tasks of \
         dexlab {version}); {workers}"
    )]
    Stalled {
        kind: String,
        version: String,
        outstanding: usize,
        total: usize,
        waited_secs: u64,
        workers: String,
    },
    #[error("task {key} failed on worker {worker}: {message}")]
    TaskFailed {
        key: String,
        worker: String,
        message: String,
    },
}

impl QueueError {
    pub(crate) fn nats(what: impl Into<String>, e: impl std::fmt::Display) -> Self {
        QueueError::Nats {
            what: what.into(),
            message: e.to_string(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        QueueError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = QueueError> = std::result::Result<T, E>;
