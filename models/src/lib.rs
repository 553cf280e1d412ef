//! dexlab-models: predictive models in burn, trained on dexlab feature datasets.
//!
//! A run reads `features.parquet` and `manifest.json` from a `dexlab features build` folder
//! ([`data`]), keeps the chosen feature columns (by default every Float64 column but the labels and
//! row keys, less any column with no finite value; a `label_…` column is never a feature) and one
//! `label_…` target, drops the rows where anything is non-finite, splits the rest chronologically
//! (train, then valid, then test, with an embargo of the label's look-ahead in blocks between them,
//! as the features manifest records it, so that no training label overlaps a later split)
//! and standardises with statistics of the train split only. [`model`] has four small models
//! (linear, MLP, GRU and Transformer encoder over a window of past rows) behind one
//! [`model::Model`] enum; [`training`] is a hand-written loop (Adam, cosine or step learning-rate
//! decay, early stopping on the validation loss, best-weights checkpoint) that is deterministic on
//! CPU: the same seed and data give byte-identical weights and metrics. [`eval`] scores the test
//! split next to naive baselines, [`artifact`] writes the model directory and [`inference`] loads
//! it back, refusing a feature list that differs from the one it was trained on, and predicts one
//! row at a time for the live engine.
//! [`rl`] holds environment-agnostic DQN and PPO agents over discrete actions, driven push-style
//! (act, then feedback) so that a backtest strategy can host one.
//!
//! Training takes a process-wide lock: burn's CPU backends keep one global random generator,
//! so two trainings interleaving their draws would not be reproducible.
//!
//! # Cargo features
//! burn's CPU backend flex ([`Backend::Flex`]) is always compiled in; the others are opt-in:
//! - `ndarray`: burn-ndarray ([`Backend::NdArray`]), for comparison.
//! - `wgpu`: burn's wgpu backend ([`Backend::Wgpu`]); GPU results are not bit-reproducible.
//! - `cuda`: burn's CUDA backend ([`Backend::Cuda`]); likewise.

/// `impl pulp::WithSimd for $op<'_>` that runs `$body(self)`. pulp instantiates `with_simd`
/// inside a function compiled for the CPU's vector extensions (AVX2 here), where `$body`, marked
/// `#[inline(always)]`, is inlined and its loops vectorise. A closure passed to `dispatch` may
/// instead stay a call of its own, compiled for plain x86-64 (`BENCHMARKS.md`).
macro_rules! vectorised {
    ($op:ident => $body:path) => {
        impl pulp::WithSimd for $op<'_> {
            type Output = ();

            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, _: S) {
                $body(self)
            }
        }
    };
}

pub mod activation;
pub mod artifact;
pub mod data;
pub mod dropout;
pub mod eval;
pub mod gru_layer;
pub mod inference;
pub mod model;
pub mod rl;
pub mod scorer;
pub mod training;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

pub use artifact::{Artifact, Schema};
pub use data::{FeatureTable, Normalizer, RowCounts};
pub use eval::{Metrics, TestReport};
pub use inference::{Predictor, SchemaDiff};
pub use model::{Model, ModelConfig};
pub use training::{Hyper, TrainingConfig};

/// Which model to train, and what its target is: shared with the store and the lab
/// (`dexlab-types`), re-exported here.
pub use dexlab_types::{ModelKind, Task};

/// The burn backend a run computes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn-flex, burn's pure-Rust CPU backend: always compiled in, and the default (1.5–2×
    /// the training throughput of burn-ndarray here, which burn 0.22 deprecates).
    #[default]
    Flex,
    /// burn-ndarray on the CPU (feature `ndarray`), for comparison.
    NdArray,
    /// wgpu (feature `wgpu`).
    Wgpu,
    /// CUDA (feature `cuda`).
    Cuda,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::NdArray => "ndarray",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }

    /// The device of this backend, without autodiff; an error when its feature is off.
    pub fn device(self) -> Result<Device, ModelError> {
        match self {
            Backend::Flex => Ok(Device::flex()),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)] // burn 0.22 deprecates ndarray in favour of flex
            Backend::NdArray => Ok(Device::ndarray()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(feature = "cuda")]
            Backend::Cuda => Ok(Device::cuda(0)),
            #[allow(unreachable_patterns)]
            other => Err(ModelError::BackendDisabled(other.as_str())),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Backend {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Backend::Flex,
            Backend::NdArray,
            Backend::Wgpu,
            Backend::Cuda,
        ]
        .into_iter()
        .find(|b| b.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| ModelError::Parse {
            what: "backend",
            value: s.into(),
            expected: "flex|ndarray|wgpu|cuda",
        })
    }
}

/// Everything the CLI passes to [`train`].
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// A `dexlab features build` output folder (`features.parquet`, `manifest.json`).
    pub features_dir: PathBuf,
    /// The model directory to write; replaced if it already holds a model.
    pub out_dir: PathBuf,
    pub model: ModelKind,
    pub task: Task,
    /// Default: the first label column of the task's kind.
    pub target: Option<String>,
    pub seed: u64,
    /// Maximum number of epochs (early stopping may end sooner).
    pub epochs: usize,
    /// A TOML file of hyperparameters; see [`training::Hyper`] for the keys.
    pub config: Option<PathBuf>,
    pub backend: Backend,
}

impl TrainOptions {
    pub fn new(
        features_dir: impl Into<PathBuf>,
        out_dir: impl Into<PathBuf>,
        model: ModelKind,
        task: Task,
    ) -> Self {
        Self {
            features_dir: features_dir.into(),
            out_dir: out_dir.into(),
            model,
            task,
            target: None,
            seed: 0,
            epochs: 30,
            config: None,
            backend: Backend::default(),
        }
    }
}

/// What [`train`] did, for the CLI to print (`--json`) or to store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    pub model_dir: PathBuf,
    pub model: ModelKind,
    pub task: Task,
    pub target: String,
    /// Number of feature columns used.
    pub features: usize,
    /// Default feature columns left out because they had no finite value.
    pub excluded_features: Vec<String>,
    pub window: usize,
    pub rows: RowCounts,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub stopped_early: bool,
    pub best_valid_loss: f64,
    pub test: TestReport,
    /// Wall-clock seconds of the main model's training loop (not saved in the artifact, which
    /// stays reproducible).
    pub train_seconds: f64,
    /// Training samples (forward + backward + update) per second of the main model.
    pub train_samples_per_sec: f64,
}

/// Train one model on a features folder and write its artifact directory.
pub fn train(opts: &TrainOptions) -> Result<TrainReport, ModelError> {
    training::run(opts)
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
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
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {source}")]
    Toml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path}: column `{column}`: {message}")]
    Column {
        path: PathBuf,
        column: String,
        message: String,
    },
    /// A hyperparameter or option out of range; `file` is the TOML file or `options`.
    #[error("{file}: key `{key}`: {message}")]
    Config {
        file: String,
        key: String,
        message: String,
    },
    #[error("{path}: {message}")]
    Data { path: PathBuf, message: String },
    #[error("{path}: weights: {source}")]
    Weights {
        path: PathBuf,
        #[source]
        source: burn::store::RecordError,
    },
    #[error("model {dir}: feature columns differ from the model's: {diff}")]
    SchemaMismatch { dir: PathBuf, diff: SchemaDiff },
    #[error("predict: {0}")]
    Input(String),
    #[error("training diverged: non-finite {what} loss at epoch {epoch}")]
    Diverged { epoch: usize, what: &'static str },
    #[error("backend `{0}` is not compiled in: enable the dexlab-models cargo feature `{0}`")]
    BackendDisabled(&'static str),
    #[error("unknown {what} `{value}`, expected {expected}")]
    Parse {
        what: &'static str,
        value: String,
        expected: &'static str,
    },
    /// An RL agent driven out of protocol (feedback without act, a bad observation or reward)
    /// or diverged; `step` counts the transitions it had completed.
    #[error("agent at step {step}: {message}")]
    Agent { step: u64, message: String },
    /// The trading environment of an RL agent does not fit the data or config.
    #[error("RL environment: {0}")]
    Env(String),
}

impl ModelError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn json(path: &Path, source: serde_json::Error) -> Self {
        ModelError::Json {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(file: &str, key: &str, message: impl Into<String>) -> Self {
        ModelError::Config {
            file: file.into(),
            key: key.into(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
