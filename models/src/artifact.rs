//! The model directory:
//!
//! | file | content |
//! | --- | --- |
//! | `model.bpk` | weights, burnpack (burn's `ModuleRecord`), f32, the best validation epoch's |
//! | `config.json` | model config, training config, hyperparameters, seed, backend, git commit |
//! | `schema.json` | feature columns in order, target, window, task |
//! | `normalizer.json` | per-feature mean and std of the train split (and the target's) |
//! | `metrics.json` | learning curve, best epoch, test metrics of the model and its baselines |
//! | `dataset.json` | the features folder, its input dataset hash, rows per split, their blocks, the embargo and the label's look-ahead |
//! | `predictions.csv` | each test sample: `block,realised,predicted` (target units, or 0/1 and P(1)) |
//!
//! The directory is written under a temporary sibling name and renamed when complete.
//! Parameter ids, which burn draws at random and stores with the weights, are renumbered in
//! module order before saving, so that the same training writes the same bytes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use burn::module::{ModuleMapper, Param, ParamId};
use burn::prelude::*;
use burn::store::ModuleRecord;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::data::{Normalizer, RowCounts};
use crate::eval::TestReport;
use crate::model::{Model, ModelConfig};
use crate::training::{EpochRecord, Hyper, TrainingConfig};
use crate::{Backend, ModelError, ModelKind, Result, Task};

pub const WEIGHTS: &str = "model.bpk";
pub const CONFIG: &str = "config.json";
pub const SCHEMA: &str = "schema.json";
pub const NORMALIZER: &str = "normalizer.json";
pub const METRICS: &str = "metrics.json";
pub const DATASET: &str = "dataset.json";
pub const PREDICTIONS: &str = "predictions.csv";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigFile {
    pub dexlab_version: String,
    pub model_kind: ModelKind,
    pub task: Task,
    pub seed: u64,
    pub backend: Backend,
    pub model: ModelConfig,
    pub training: TrainingConfig,
    pub hyper: Hyper,
    /// `git rev-parse HEAD` where training ran, or "unknown".
    pub git_commit: String,
}

/// What a row handed to the model must look like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// Feature columns, in the order the model reads them.
    pub features: Vec<String>,
    pub target: String,
    /// Rows per sample (1 for the flat models unless configured).
    pub window: usize,
    pub task: Task,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsFile {
    pub curve: Vec<EpochRecord>,
    pub best_epoch: usize,
    pub best_valid_loss: f64,
    pub epochs_run: usize,
    pub stopped_early: bool,
    pub test: TestReport,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub features_dir: PathBuf,
    /// The features manifest's hash of the chain dataset the features were computed from.
    pub dataset_hash: Option<String>,
    /// Default feature columns left out because they had no finite value.
    pub excluded_features: Vec<String>,
    pub rows: RowCounts,
    /// Samples skipped before the valid and the test split; at least the label's look-ahead.
    pub embargo: usize,
    /// First and last block of each split.
    pub train_blocks: (i64, i64),
    pub valid_blocks: (i64, i64),
    pub test_blocks: (i64, i64),
    /// How many blocks after its row the target label looks ([`crate::data::label_lookahead`],
    /// or the configured embargo for a label whose look-ahead nothing records). Absent in model
    /// directories written before it was recorded.
    #[serde(default)]
    pub lookahead_blocks: Option<usize>,
}

/// The blocks a model's training saw: its train and valid splits, and through their labels the
/// `embargo` blocks after them. A backtest or walk-forward of the model is out of sample only from
/// [`SeenBlocks::first_unseen`] on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenBlocks {
    /// The hash of the chain dataset the model's features were built from, if recorded.
    pub dataset_hash: Option<String>,
    pub train_blocks: (i64, i64),
    pub valid_blocks: (i64, i64),
    /// The held-out test split (seen by nothing but the final scoring).
    pub test_blocks: (i64, i64),
    /// Blocks after the valid split that its labels read: the larger of the label's look-ahead
    /// and the split embargo.
    pub embargo: usize,
    /// `valid_blocks.1 + embargo + 1`.
    pub first_unseen: i64,
}

impl Artifact {
    /// The blocks this model's training saw (`dir` names it in errors); see
    /// [`DatasetInfo::seen_blocks`].
    pub fn seen_blocks(&self, dir: &Path) -> Result<SeenBlocks> {
        self.dataset
            .seen_blocks(&self.schema.target, &dir.join(DATASET))
    }
}

impl DatasetInfo {
    /// The blocks a model of `target` trained on these splits saw (`path` names the file in
    /// errors). A directory written before the label's look-ahead was recorded is refused unless
    /// the target's name states its horizon, since nothing else bounds the blocks its labels read.
    pub fn seen_blocks(&self, target: &str, path: &Path) -> Result<SeenBlocks> {
        let d = self;
        let lookahead = d
            .lookahead_blocks
            .or_else(|| crate::data::label_lookahead(target, None))
            .ok_or_else(|| ModelError::Data {
                path: path.into(),
                message: format!(
                    "records no look-ahead for its target `{target}` (written by an older \
                     dexlab): the blocks its labels read cannot be bounded, so no window can be \
                     proven out of sample; retrain the model"
                ),
            })?;
        let embargo = lookahead.max(d.embargo);
        Ok(SeenBlocks {
            dataset_hash: d.dataset_hash.clone(),
            train_blocks: d.train_blocks,
            valid_blocks: d.valid_blocks,
            test_blocks: d.test_blocks,
            embargo,
            first_unseen: d.valid_blocks.1 + embargo as i64 + 1,
        })
    }
}

/// The model's test-split predictions, in time order, behind the test metrics: the same numbers
/// the metrics were computed from, so `predictions.csv` reproduces `metrics.json` exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// Block of each sample's (last) row.
    pub blocks: Vec<i64>,
    /// The target: raw units (regression) or 0/1 (classification).
    pub realised: Vec<f64>,
    /// Raw units (regression) or the probability of 1 (classification).
    pub predicted: Vec<f64>,
}

impl Predictions {
    /// `block,realised,predicted`, one line per sample. Floats are printed with Rust's shortest
    /// round-trip form, so reading them back gives the same `f64`s and the file the same bytes.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let mut text = String::with_capacity(32 * self.blocks.len() + 32);
        text.push_str("block,realised,predicted\n");
        for ((b, y), p) in self.blocks.iter().zip(&self.realised).zip(&self.predicted) {
            text.push_str(&format!("{b},{y:?},{p:?}\n"));
        }
        fs::write(path, text).map_err(|e| ModelError::io(path, e))
    }
}

/// Everything in a model directory but the weights.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub config: ConfigFile,
    pub schema: Schema,
    pub normalizer: Normalizer,
    pub metrics: MetricsFile,
    pub dataset: DatasetInfo,
}

impl Artifact {
    pub fn write_json(&self, dir: &Path) -> Result<()> {
        write_json(&dir.join(CONFIG), &self.config)?;
        write_json(&dir.join(SCHEMA), &self.schema)?;
        write_json(&dir.join(NORMALIZER), &self.normalizer)?;
        write_json(&dir.join(METRICS), &self.metrics)?;
        write_json(&dir.join(DATASET), &self.dataset)
    }

    pub fn read(dir: &Path) -> Result<Self> {
        Ok(Self {
            config: read_json(&dir.join(CONFIG))?,
            schema: read_json(&dir.join(SCHEMA))?,
            normalizer: read_json(&dir.join(NORMALIZER))?,
            metrics: read_json(&dir.join(METRICS))?,
            dataset: read_json(&dir.join(DATASET))?,
        })
    }
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| ModelError::json(path, e))?;
    text.push('\n');
    fs::write(path, text).map_err(|e| ModelError::io(path, e))
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::json(path, e))
}

/// Renumbers parameter ids 1, 2, … in module order.
pub(crate) struct CanonicalIds(pub(crate) u64);

impl ModuleMapper for CanonicalIds {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (_, value, mapper) = param.consume();
        self.0 += 1;
        Param::from_mapped_value(ParamId::from(self.0), value, mapper)
    }
}

pub fn save_weights(model: Model, path: &Path) -> Result<()> {
    model
        .map(&mut CanonicalIds(0))
        .into_record()
        .save(path)
        .map_err(|source| ModelError::Weights {
            path: path.into(),
            source,
        })
}

/// The model of `config` with the weights of `path`, on `device`, in validation mode.
pub fn load_weights(config: &ModelConfig, path: &Path, device: &Device) -> Result<Model> {
    let err = |source| ModelError::Weights {
        path: path.into(),
        source,
    };
    let record = ModuleRecord::load(path).map_err(err)?;
    let model = config.init(device).try_load_record(record).map_err(err)?;
    Ok(model.valid())
}

/// The input dataset hash from a features folder's `manifest.json` (`input_hash`, or
/// `dataset_hash`); `None` without a manifest.
pub fn read_dataset_hash(features_dir: &Path) -> Result<Option<String>> {
    let path = features_dir.join("manifest.json");
    if !path.exists() {
        tracing::warn!(path = %path.display(), "no features manifest: dataset hash unknown");
        return Ok(None);
    }
    let v: serde_json::Value = read_json(&path)?;
    Ok(["input_hash", "dataset_hash"]
        .iter()
        .find_map(|k| v.get(k).and_then(|h| h.as_str()).map(str::to_string)))
}

/// A features folder's `manifest.json`; `None` without one.
pub fn read_manifest(features_dir: &Path) -> Result<Option<serde_json::Value>> {
    let path = features_dir.join("manifest.json");
    if !path.exists() {
        return Ok(None);
    }
    read_json(&path).map(Some)
}

/// `git rev-parse HEAD` in the current directory, or "unknown".
pub fn git_commit() -> String {
    Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// A model directory being written: a hidden sibling renamed over `out` on [`commit`].
///
/// [`commit`]: Staging::commit
#[derive(Debug)]
pub struct Staging {
    tmp: PathBuf,
    out: PathBuf,
    committed: bool,
}

impl Staging {
    pub fn new(out: &Path) -> Result<Self> {
        let name = out.file_name().ok_or_else(|| ModelError::Data {
            path: out.into(),
            message: "the output must name a directory".into(),
        })?;
        if out.exists() && !is_model_dir(out) && !is_empty_dir(out) {
            return Err(ModelError::Data {
                path: out.into(),
                message: "exists and is not a model directory (no schema.json): not replacing it"
                    .into(),
            });
        }
        let parent = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = parent.join(format!(
            ".{}.partial-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
        }
        fs::create_dir_all(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
        Ok(Self {
            tmp,
            out: out.into(),
            committed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.tmp
    }

    pub fn commit(mut self) -> Result<PathBuf> {
        if self.out.exists() {
            fs::remove_dir_all(&self.out).map_err(|e| ModelError::io(&self.out, e))?;
        }
        fs::rename(&self.tmp, &self.out).map_err(|e| ModelError::io(&self.out, e))?;
        self.committed = true;
        Ok(self.out.clone())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

fn is_model_dir(dir: &Path) -> bool {
    dir.join(SCHEMA).is_file()
}

fn is_empty_dir(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `dataset.json` as dexlab wrote it before the look-ahead was recorded.
    fn old_info() -> DatasetInfo {
        serde_json::from_str(
            r#"{"features_dir": "f", "dataset_hash": "abc", "excluded_features": [],
                "rows": {"total": 100, "dropped_target": 0, "dropped_features": 0,
                         "embargoed": 0, "train": 70, "valid": 15, "test": 15},
                "embargo": 0, "train_blocks": [1000, 1069], "valid_blocks": [1070, 1084],
                "test_blocks": [1085, 1099]}"#,
        )
        .unwrap()
    }

    #[test]
    fn seen_blocks_end_after_the_valid_split_and_the_look_ahead() {
        let p = Path::new("m/dataset.json");
        let old = old_info();
        assert_eq!(old.lookahead_blocks, None);
        // The name states the horizon: provable even from an old directory.
        let s = old.seen_blocks("label_fwd_ret_5__pool", p).unwrap();
        assert_eq!((s.embargo, s.first_unseen), (5, 1090));
        assert_eq!(s.train_blocks, (1000, 1069));
        // The arbitrage label's look-ahead was its latency, which an old directory lost.
        let err = old
            .seen_blocks("label_arb_profitable__a__b", p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("retrain"), "{err}");
        let new = DatasetInfo {
            lookahead_blocks: Some(3),
            embargo: 3,
            ..old
        };
        let s = new.seen_blocks("label_arb_profitable__a__b", p).unwrap();
        assert_eq!((s.embargo, s.first_unseen), (3, 1088));
    }
}
