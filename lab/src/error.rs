//! The lab's errors: what went wrong and where (which experiment, model, directory or store).

use std::path::PathBuf;

pub type Result<T, E = LabError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Boxed: the store's errors carry names and reasons, and would make every lab result large.
    #[error(transparent)]
    Store(Box<dexlab_store::StoreError>),

    #[error(transparent)]
    Strategy(#[from] dexlab_strategy::registry::RegistryError),

    #[cfg(feature = "models")]
    #[error(transparent)]
    Model(#[from] dexlab_models::ModelError),

    #[cfg(feature = "evolve")]
    #[error(transparent)]
    Evolve(#[from] dexlab_evolve::EvolveError),

    #[cfg(any(feature = "evolve", feature = "train"))]
    #[error(transparent)]
    Data(#[from] dexlab_data::DataError),

    #[cfg(feature = "distributed")]
    #[error(transparent)]
    Features(#[from] dexlab_features::FeatureError),

    /// A value of the execution config (`[backtest]`) that cannot be used with the dataset.
    #[cfg(feature = "evolve")]
    #[error(transparent)]
    ExecConfig(#[from] dexlab_engine::config::ConfigError),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    /// No experiment of that id or name in the store.
    #[error("no experiment `{0}` in the store")]
    NoExperiment(String),

    /// No model of that name or id in the registry.
    #[error(
        "no model `{name_or_id}` in the {backend} store at {url}; `dexlab models list` shows the \
         registered ones"
    )]
    NoModel {
        name_or_id: String,
        backend: &'static str,
        url: String,
    },

    /// An evolve checkpoint that belongs to an experiment of another store (or to one this store
    /// no longer holds): resuming it here would split the experiment across two stores or write
    /// into another experiment.
    #[error(
        "{} belongs to experiment {id} `{name}` of {}; {found}. Resuming it here would write its \
         remaining folds into another store than its first ones. {}, or pass --force to start \
         the experiment over in this store (the checkpoint is discarded)",
        checkpoint.display(),
        owner.as_deref().map_or("the store it was made against (an older dexlab did not record \
            which)".to_owned(), |u| format!("the store at {u}")),
        owner.as_deref().map_or("Point DATABASE_URL at that store to resume it there".to_owned(),
            |u| format!("Set DATABASE_URL={u} to resume it there")),
    )]
    CheckpointOfAnotherStore {
        checkpoint: PathBuf,
        id: i64,
        name: String,
        /// The URL (password scrubbed) of the store the checkpoint was made against, when the
        /// checkpoint records it.
        owner: Option<String>,
        /// What this run's store holds instead, in words.
        found: String,
    },

    /// Input refused (a name, a flag's value, data that does not fit), with the reason in words.
    #[error("{0}")]
    Refused(String),

    /// `context`, then the error it explains.
    #[error("{context}")]
    Context {
        context: String,
        #[source]
        source: Box<LabError>,
    },
}

impl From<dexlab_store::StoreError> for LabError {
    fn from(e: dexlab_store::StoreError) -> Self {
        LabError::Store(Box::new(e))
    }
}

impl LabError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LabError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        LabError::Json {
            what: what.into(),
            source,
        }
    }
}

/// `.context(…)` for the lab's results: the error keeps its source chain.
#[cfg(any(feature = "evolve", feature = "train"))]
pub(crate) trait Context<T> {
    fn context(self, context: impl Into<String>) -> Result<T>;
    fn with_context<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T>;
}

#[cfg(any(feature = "evolve", feature = "train"))]
impl<T, E: Into<LabError>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| LabError::Context {
            context: context.into(),
            source: Box::new(e.into()),
        })
    }

    fn with_context<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| LabError::Context {
            context: f().into(),
            source: Box::new(e.into()),
        })
    }
}

/// Refuses with a formatted message: `refuse!("…{x}…")`.
macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err($crate::error::LabError::Refused(format!($($arg)*)))
    };
}
pub(crate) use refuse;
