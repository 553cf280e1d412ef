//! From `features.parquet` to normalised windows: column selection, dropping non-finite rows,
//! the chronological split, the train-only [`Normalizer`], and burn's `Dataset` and `Batcher`.
//!
//! Every sample is a table row `t` (one block): its input is the window of rows `t-W+1..=t`
//! (W = 1 for the flat models), its target is the label at `t`. Rows stay in file order, which
//! `dexlab features build` writes ascending by block, so "earlier row" means "earlier block".

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, Float64Array, RecordBatchReader};
use arrow::datatypes::DataType;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use crate::{ModelError, Result, Task};

/// Columns that identify a row rather than describe the market at it.
pub const KEY_COLUMNS: [&str; 2] = ["block_number", "timestamp"];
pub const LABEL_PREFIX: &str = "label_";

/// How a column was stored in the parquet file (all are read as `f64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Float,
    Int,
    Bool,
}

/// The numeric columns of a features parquet file, as `f64` (null → NaN, bool → 0/1).
#[derive(Debug, Clone)]
pub struct FeatureTable {
    pub path: PathBuf,
    pub names: Vec<String>,
    pub types: Vec<ColumnType>,
    columns: Vec<Vec<f64>>,
    rows: usize,
}

impl FeatureTable {
    /// Read every numeric column; other types (strings, …) are skipped.
    pub fn read(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
        let parquet_err = |source| ModelError::Parquet {
            path: path.into(),
            source,
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(parquet_err)?
            .build()
            .map_err(parquet_err)?;
        let schema = reader.schema();
        let mut names = Vec::new();
        let mut types = Vec::new();
        let mut wanted = Vec::new();
        for (i, field) in schema.fields().iter().enumerate() {
            let ty = match field.data_type() {
                DataType::Float16 | DataType::Float32 | DataType::Float64 => ColumnType::Float,
                DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::UInt64 => ColumnType::Int,
                DataType::Boolean => ColumnType::Bool,
                _ => continue,
            };
            names.push(field.name().clone());
            types.push(ty);
            wanted.push(i);
        }
        let mut columns: Vec<Vec<f64>> = vec![Vec::new(); wanted.len()];
        for batch in reader {
            let batch = batch.map_err(|source| ModelError::Arrow {
                path: path.into(),
                source,
            })?;
            for (out, &i) in columns.iter_mut().zip(&wanted) {
                let cast = arrow::compute::cast(batch.column(i), &DataType::Float64).map_err(
                    |source| ModelError::Arrow {
                        path: path.into(),
                        source,
                    },
                )?;
                let values = cast
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .expect("cast to Float64 yields a Float64Array");
                out.extend((0..values.len()).map(|r| {
                    if values.is_null(r) {
                        f64::NAN
                    } else {
                        values.value(r)
                    }
                }));
            }
        }
        let rows = columns.first().map_or(0, Vec::len);
        Ok(Self {
            path: path.into(),
            names,
            types,
            columns,
            rows,
        })
    }

    /// A table from columns in memory (tests, synthetic data).
    pub fn from_columns(
        path: impl Into<PathBuf>,
        cols: Vec<(String, ColumnType, Vec<f64>)>,
    ) -> Self {
        let rows = cols.first().map_or(0, |c| c.2.len());
        assert!(
            cols.iter().all(|c| c.2.len() == rows),
            "columns of equal length"
        );
        let (mut names, mut types, mut columns) = (Vec::new(), Vec::new(), Vec::new());
        for (n, t, c) in cols {
            names.push(n);
            types.push(t);
            columns.push(c);
        }
        Self {
            path: path.into(),
            names,
            types,
            columns,
            rows,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    pub fn column(&self, name: &str) -> Option<&[f64]> {
        self.index(name).map(|i| self.columns[i].as_slice())
    }

    fn require(&self, name: &str, what: &str) -> Result<usize> {
        self.index(name).ok_or_else(|| ModelError::Column {
            path: self.path.clone(),
            column: name.into(),
            message: format!("{what} column not found (or not numeric) in this file"),
        })
    }

    pub fn label_columns(&self) -> impl Iterator<Item = &str> {
        self.names
            .iter()
            .map(String::as_str)
            .filter(|n| n.starts_with(LABEL_PREFIX))
    }

    /// Every Float column that is neither a label nor a row key, in file order.
    pub fn default_features(&self) -> Vec<String> {
        self.names
            .iter()
            .zip(&self.types)
            .filter(|(n, t)| {
                **t == ColumnType::Float
                    && !n.starts_with(LABEL_PREFIX)
                    && !KEY_COLUMNS.contains(&n.as_str())
            })
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Whether a column has no finite value at all (e.g. `base_fee_wei` of a dataset imported
    /// without base fees): as a feature it would make every row unusable.
    pub fn is_empty_column(&self, name: &str) -> bool {
        self.column(name)
            .is_none_or(|c| !c.iter().any(|v| v.is_finite()))
    }

    /// A label is binary when it is stored as bool or its finite values are all 0 or 1.
    pub fn is_binary(&self, name: &str) -> bool {
        let Some(i) = self.index(name) else {
            return false;
        };
        self.types[i] == ColumnType::Bool
            || self.columns[i]
                .iter()
                .filter(|v| v.is_finite())
                .all(|&v| v == 0.0 || v == 1.0)
    }

    /// The first label column of the task's kind (binary for classification, otherwise
    /// regression) that has at least one finite value.
    pub fn default_target(&self, task: Task) -> Option<String> {
        self.label_columns()
            .filter(|n| !self.is_empty_column(n))
            .find(|n| self.is_binary(n) == (task == Task::Classification))
            .map(str::to_string)
    }

    /// Row index by block number, when the table has one.
    fn block_numbers(&self) -> Option<&[f64]> {
        self.column("block_number")
    }
}

/// The number of rows ahead a label looks, from its name: `label_fwd_ret_5__pool` → 5. `None`
/// when the first name segment does not end in `_<digits>` (e.g. `label_arb_profitable__a__b`).
pub fn label_horizon(target: &str) -> Option<usize> {
    let head = target.strip_prefix(LABEL_PREFIX)?.split("__").next()?;
    let (_, digits) = head.rsplit_once('_')?;
    digits.parse().ok().filter(|&h| h > 0)
}

/// How many blocks after its row `t` a label looks (it reads blocks up to `t + lookahead`): what
/// the features manifest records for the column (`lookahead_blocks`), else what dexlab's label
/// names say: `label_fwd_ret_<h>__…` and `label_fwd_spread_chg_<h>__…` look `h` blocks ahead,
/// `label_arb_profitable__…` the manifest config's `latency_blocks`. `None` when neither says.
pub fn label_lookahead(target: &str, manifest: Option<&serde_json::Value>) -> Option<usize> {
    let recorded = manifest
        .and_then(|m| m.get("columns")?.as_array())
        .and_then(|cols| {
            cols.iter()
                .find(|c| c.get("name").and_then(|n| n.as_str()) == Some(target))
        })
        .and_then(|c| c.get("lookahead_blocks")?.as_u64());
    if let Some(l) = recorded {
        return Some(l as usize);
    }
    let head = target.strip_prefix(LABEL_PREFIX)?.split("__").next()?;
    if head == "arb_profitable" {
        return manifest
            .and_then(|m| m.pointer("/config/latency_blocks")?.as_u64())
            .map(|l| l as usize);
    }
    head.strip_prefix("fwd_ret_")
        .or_else(|| head.strip_prefix("fwd_spread_chg_"))?
        .parse()
        .ok()
}

/// The `label_…` columns of a feature list: a label at block t reads blocks after t, so as a
/// feature it hands the model the answer.
pub fn label_features(features: &[String]) -> Vec<&str> {
    features
        .iter()
        .map(String::as_str)
        .filter(|f| f.starts_with(LABEL_PREFIX))
        .collect()
}

/// Per-column mean and standard deviation of the train split, applied to every split; for
/// regression also the target's, so that the networks fit a unit-scale target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalizer {
    pub features: Vec<String>,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    pub target_mean: f64,
    pub target_std: f64,
}

/// Standard deviations below this are treated as 1 (a constant column stays centred at 0).
const MIN_STD: f64 = 1e-12;

impl Normalizer {
    /// Fit on `rows` of `cols` (column-major).
    pub fn fit(
        features: &[String],
        cols: &[&[f64]],
        target: Option<&[f64]>,
        rows: &[usize],
    ) -> Self {
        let (mean, std): (Vec<f64>, Vec<f64>) = cols
            .iter()
            .map(|c| mean_std(rows.iter().map(|&r| c[r])))
            .unzip();
        let (target_mean, target_std) = match target {
            Some(t) => mean_std(rows.iter().map(|&r| t[r])),
            None => (0.0, 1.0),
        };
        Self {
            features: features.to_vec(),
            mean,
            std,
            target_mean,
            target_std,
        }
    }

    pub fn apply(&self, col: usize, v: f64) -> f32 {
        ((v - self.mean[col]) / self.std[col]) as f32
    }

    pub fn target_to_model(&self, y: f64) -> f32 {
        ((y - self.target_mean) / self.target_std) as f32
    }

    pub fn target_from_model(&self, y: f32) -> f64 {
        y as f64 * self.target_std + self.target_mean
    }
}

fn mean_std(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = values.clone().count().max(1) as f64;
    let mean = values.clone().sum::<f64>() / n;
    let var = values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let std = var.sqrt();
    (mean, if std > MIN_STD { std } else { 1.0 })
}

/// Fractions of the usable samples, in time order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitFractions {
    pub train: f64,
    pub valid: f64,
    pub test: f64,
}

impl Default for SplitFractions {
    fn default() -> Self {
        Self {
            train: 0.7,
            valid: 0.15,
            test: 0.15,
        }
    }
}

/// What [`prepare`] needs besides the table.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    pub features: Vec<String>,
    pub target: String,
    pub task: Task,
    pub window: usize,
    pub split: SplitFractions,
    /// Samples skipped at the start of valid and of test, so that no train (valid) label,
    /// which looks `horizon` rows ahead, overlaps the next split.
    pub embargo: usize,
}

/// How the table's rows were used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowCounts {
    pub total: usize,
    /// Target NaN/null/infinite.
    pub dropped_target: usize,
    /// Target finite but some feature in the row's window non-finite, or fewer than W rows
    /// before it.
    pub dropped_features: usize,
    /// Usable samples skipped between splits (see [`PrepareOptions::embargo`]).
    pub embargoed: usize,
    pub train: usize,
    pub valid: usize,
    pub test: usize,
}

impl RowCounts {
    pub fn dropped(&self) -> usize {
        self.dropped_target + self.dropped_features
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Valid,
    Test,
}

/// Normalised inputs and targets of every table row, and the sample rows of each split.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub features: Vec<String>,
    pub target: String,
    pub task: Task,
    pub window: usize,
    pub normalizer: Normalizer,
    pub counts: RowCounts,
    /// Table rows of the samples of each split, ascending.
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
    pub test: Vec<usize>,
    /// Raw target of every table row (NaN where undefined).
    pub raw_target: Vec<f64>,
    /// Block number of every table row, if the table has the column.
    pub blocks: Option<Vec<i64>>,
    x: Arc<Vec<f32>>,
    y: Arc<Vec<f32>>,
}

/// Select, clean, split and normalise.
pub fn prepare(table: &FeatureTable, opts: &PrepareOptions) -> Result<Prepared> {
    let path = &table.path;
    if opts.features.is_empty() {
        return Err(ModelError::Data {
            path: path.clone(),
            message: "no feature columns selected".into(),
        });
    }
    let labels = label_features(&opts.features);
    if !labels.is_empty() {
        return Err(ModelError::Data {
            path: path.clone(),
            message: format!(
                "label columns cannot be features (a label at block t reads blocks after t): {}",
                labels
                    .iter()
                    .map(|l| format!("`{l}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let target_idx = table.require(&opts.target, "target")?;
    let feat_idx = opts
        .features
        .iter()
        .map(|f| table.require(f, "feature"))
        .collect::<Result<Vec<_>>>()?;
    if let Some(f) = opts.features.iter().find(|f| **f == opts.target) {
        return Err(ModelError::Column {
            path: path.clone(),
            column: f.clone(),
            message: "is both the target and a feature".into(),
        });
    }
    let cols: Vec<&[f64]> = feat_idx
        .iter()
        .map(|&i| table.columns[i].as_slice())
        .collect();
    let target = table.columns[target_idx].as_slice();
    if opts.task == Task::Classification
        && let Some(v) = target
            .iter()
            .find(|v| v.is_finite() && **v != 0.0 && **v != 1.0)
    {
        return Err(ModelError::Column {
            path: path.clone(),
            column: opts.target.clone(),
            message: format!("classification needs a 0/1 target, found {v}"),
        });
    }
    let n = table.rows;
    let w = opts.window.max(1);
    let row_ok: Vec<bool> = (0..n)
        .map(|r| cols.iter().all(|c| c[r].is_finite()))
        .collect();
    // Length of the run of finite rows ending at r.
    let mut run = vec![0usize; n];
    for r in 0..n {
        run[r] = if row_ok[r] {
            1 + if r > 0 { run[r - 1] } else { 0 }
        } else {
            0
        };
    }
    let mut counts = RowCounts {
        total: n,
        ..Default::default()
    };
    let mut usable = Vec::new();
    for r in 0..n {
        if !target[r].is_finite() {
            counts.dropped_target += 1;
        } else if run[r] < w {
            counts.dropped_features += 1;
        } else {
            usable.push(r);
        }
    }
    let m = usable.len();
    let n_train = (m as f64 * opts.split.train).floor() as usize;
    let n_valid = (m as f64 * opts.split.valid).floor() as usize;
    let e = opts.embargo;
    // Saturating, and each start clamped to its end: an embargo longer than a split leaves that
    // split empty (reported below) rather than overflowing or cutting a reversed slice.
    let valid_end = (n_train + n_valid).min(m);
    let train = usable[..n_train].to_vec();
    let valid = usable[n_train.saturating_add(e).min(valid_end)..valid_end].to_vec();
    let test = usable[valid_end.saturating_add(e).min(m)..].to_vec();
    counts.train = train.len();
    counts.valid = valid.len();
    counts.test = test.len();
    counts.embargoed = m - train.len() - valid.len() - test.len();
    if train.len() < 2 || valid.is_empty() || test.is_empty() {
        let worst = worst_columns(&opts.features, &cols);
        return Err(ModelError::Data {
            path: path.clone(),
            message: format!(
                "too few usable rows for a train/valid/test split: {m} usable of {n} \
                 ({} with a non-finite target `{}`, {} with a non-finite feature in a window \
                 of {w}); splits {}/{}/{} after an embargo of {e}; columns with the most \
                 non-finite values: {worst}",
                counts.dropped_target,
                opts.target,
                counts.dropped_features,
                counts.train,
                counts.valid,
                counts.test,
            ),
        });
    }
    let scale_target = opts.task == Task::Regression;
    let normalizer = Normalizer::fit(
        &opts.features,
        &cols,
        scale_target.then_some(target),
        &train,
    );
    let f = cols.len();
    let mut x = vec![f32::NAN; n * f];
    for r in 0..n {
        if row_ok[r] {
            for (c, col) in cols.iter().enumerate() {
                x[r * f + c] = normalizer.apply(c, col[r]);
            }
        }
    }
    let y = target
        .iter()
        .map(|&v| {
            if scale_target {
                normalizer.target_to_model(v)
            } else {
                v as f32
            }
        })
        .collect();
    let blocks = table
        .block_numbers()
        .map(|b| b.iter().map(|&v| v as i64).collect());
    Ok(Prepared {
        features: opts.features.clone(),
        target: opts.target.clone(),
        task: opts.task,
        window: w,
        normalizer,
        counts,
        train,
        valid,
        test,
        raw_target: target.to_vec(),
        blocks,
        x: Arc::new(x),
        y: Arc::new(y),
    })
}

fn worst_columns(names: &[String], cols: &[&[f64]]) -> String {
    let mut bad: Vec<(usize, &str)> = cols
        .iter()
        .zip(names)
        .map(|(c, n)| (c.iter().filter(|v| !v.is_finite()).count(), n.as_str()))
        .filter(|(k, _)| *k > 0)
        .collect();
    bad.sort_by_key(|b| std::cmp::Reverse(b.0));
    if bad.is_empty() {
        return "none".into();
    }
    bad.iter()
        .take(5)
        .map(|(k, n)| format!("`{n}` ({k})"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Prepared {
    pub fn rows(&self, split: Split) -> &[usize] {
        match split {
            Split::Train => &self.train,
            Split::Valid => &self.valid,
            Split::Test => &self.test,
        }
    }

    pub fn dataset(&self, split: Split) -> WindowDataset {
        WindowDataset {
            x: self.x.clone(),
            y: self.y.clone(),
            features: self.features.len(),
            window: self.window,
            rows: self.rows(split).to_vec(),
        }
    }

    /// The normalised window ending at table row `t` (row-major `[window, features]`).
    pub fn window_at(&self, t: usize) -> &[f32] {
        let f = self.features.len();
        &self.x[(t + 1 - self.window) * f..(t + 1) * f]
    }

    /// Block number of a table row (the row index when the table has no `block_number`).
    pub fn block(&self, row: usize) -> i64 {
        self.blocks.as_ref().map_or(row as i64, |b| b[row])
    }

    /// Train-split positive rate (classification) or mean target (regression), raw units.
    pub fn train_target_mean(&self) -> f64 {
        let s: f64 = self.train.iter().map(|&r| self.raw_target[r]).sum();
        s / self.train.len().max(1) as f64
    }

    /// The persistence forecast at each row of `rows`: the target of the row `horizon` blocks
    /// earlier, whose look-ahead has fully elapsed at the forecast time (for a forward return
    /// that is the past return over the same horizon). Rows where it is undefined get 0.
    /// Returns the forecasts and how many fell back to 0.
    pub fn persistence(&self, rows: &[usize], horizon: usize) -> (Vec<f64>, usize) {
        let by_block: Option<HashMap<i64, usize>> = self
            .blocks
            .as_ref()
            .map(|b| b.iter().enumerate().map(|(i, &blk)| (blk, i)).collect());
        let mut fallback = 0;
        let preds = rows
            .iter()
            .map(|&t| {
                let past = match &by_block {
                    Some(m) => m.get(&(self.block(t) - horizon as i64)).copied(),
                    None => t.checked_sub(horizon),
                };
                match past.map(|p| self.raw_target[p]) {
                    Some(v) if v.is_finite() => v,
                    _ => {
                        fallback += 1;
                        0.0
                    }
                }
            })
            .collect();
        (preds, fallback)
    }
}

/// One sample: the flattened normalised window and the model-scale target.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowItem {
    pub x: Vec<f32>,
    pub y: f32,
}

/// The samples of one split, sharing the normalised table with the other splits.
#[derive(Debug, Clone)]
pub struct WindowDataset {
    x: Arc<Vec<f32>>,
    y: Arc<Vec<f32>>,
    features: usize,
    window: usize,
    rows: Vec<usize>,
}

impl WindowDataset {
    pub fn rows(&self) -> &[usize] {
        &self.rows
    }
}

impl Dataset<WindowItem> for WindowDataset {
    fn get(
        &self,
        index: usize,
    ) -> std::result::Result<WindowItem, burn::data::dataset::DatasetError> {
        let t = self.rows[index];
        let f = self.features;
        Ok(WindowItem {
            x: self.x[(t + 1 - self.window) * f..(t + 1) * f].to_vec(),
            y: self.y[t],
        })
    }

    fn len(&self) -> usize {
        self.rows.len()
    }
}

/// Stacks items into `[batch, window, features]` inputs and `[batch]` targets.
#[derive(Debug, Clone)]
pub struct WindowBatcher {
    pub window: usize,
    pub features: usize,
}

#[derive(Debug, Clone)]
pub struct WindowBatch {
    /// `[batch, window, features]`
    pub inputs: Tensor<3>,
    /// `[batch]`, model scale (standardised regression target, or 0/1).
    pub targets: Tensor<1>,
}

impl Batcher<WindowItem, WindowBatch> for WindowBatcher {
    fn batch(&self, items: Vec<WindowItem>, device: &Device) -> WindowBatch {
        let b = items.len();
        let mut x = Vec::with_capacity(b * self.window * self.features);
        let mut y = Vec::with_capacity(b);
        for item in items {
            x.extend_from_slice(&item.x);
            y.push(item.y);
        }
        WindowBatch {
            inputs: Tensor::from_data(TensorData::new(x, [b, self.window, self.features]), device),
            targets: Tensor::from_data(TensorData::new(y, [b]), device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(n: usize) -> FeatureTable {
        let t: Vec<f64> = (0..n).map(|i| i as f64).collect();
        // A feature that grows over time: its train mean must not see later rows.
        let a: Vec<f64> = t.iter().map(|&i| i * 10.0).collect();
        let mut b: Vec<f64> = t.iter().map(|&i| (i * 0.7).sin()).collect();
        b[3] = f64::NAN;
        let mut y: Vec<f64> = t.iter().map(|&i| (i * 0.3).cos()).collect();
        y[10] = f64::NAN;
        FeatureTable::from_columns(
            "mem",
            vec![
                (
                    "block_number".into(),
                    ColumnType::Int,
                    t.iter().map(|i| i + 100.0).collect(),
                ),
                ("a".into(), ColumnType::Float, a),
                ("b".into(), ColumnType::Float, b),
                ("label_fwd_ret_2__p".into(), ColumnType::Float, y),
            ],
        )
    }

    fn opts(window: usize, embargo: usize) -> PrepareOptions {
        PrepareOptions {
            features: vec!["a".into(), "b".into()],
            target: "label_fwd_ret_2__p".into(),
            task: Task::Regression,
            window,
            split: SplitFractions::default(),
            embargo,
        }
    }

    /// An embargo longer than the valid split, or than the whole table (`usize::MAX` included),
    /// leaves too few rows: an error saying so, not a slice-index panic or an overflow.
    #[test]
    fn an_embargo_longer_than_a_split_is_an_error_not_a_panic() {
        let t = table(200);
        for embargo in [40, 150, 10_000, usize::MAX] {
            let e = prepare(&t, &opts(1, embargo)).unwrap_err().to_string();
            assert!(e.contains("too few usable rows"), "{embargo}: {e}");
            assert!(
                e.contains(&format!("embargo of {embargo}")),
                "{embargo}: {e}"
            );
        }
    }

    #[test]
    fn split_is_chronological_and_normaliser_sees_train_rows_only() {
        let t = table(200);
        let p = prepare(&t, &opts(1, 0)).unwrap();
        assert_eq!(p.counts.dropped_target, 1);
        assert_eq!(p.counts.dropped_features, 1);
        assert_eq!(p.counts.train + p.counts.valid + p.counts.test, 198);
        assert!(p.train.windows(2).all(|w| w[0] < w[1]));
        assert!(p.train.last() < p.valid.first());
        assert!(p.valid.last() < p.test.first());
        assert!(!p.train.contains(&3) && !p.train.contains(&10));
        // Mean of `a` over the train rows only.
        let want = p.train.iter().map(|&r| r as f64 * 10.0).sum::<f64>() / p.train.len() as f64;
        assert!(
            (p.normalizer.mean[0] - want).abs() < 1e-9,
            "{} vs {want}",
            p.normalizer.mean[0]
        );
        let all = (0..200).map(|r| r as f64 * 10.0).sum::<f64>() / 200.0;
        assert!(p.normalizer.mean[0] < all);
        let ty: Vec<f64> = p
            .train
            .iter()
            .map(|&r| t.column("label_fwd_ret_2__p").unwrap()[r])
            .collect();
        let tm = ty.iter().sum::<f64>() / ty.len() as f64;
        assert!((p.normalizer.target_mean - tm).abs() < 1e-12);
    }

    #[test]
    fn windows_need_finite_history_and_embargo_separates_splits() {
        let t = table(200);
        let p = prepare(&t, &opts(4, 2)).unwrap();
        // Row 3 is NaN: rows 3..=6 have it in their window, rows 0..=2 lack history.
        for r in 0..=6 {
            assert!(!p.train.contains(&r), "row {r}");
        }
        assert_eq!(p.counts.embargoed, 4);
        assert!(p.valid[0] >= p.train.last().unwrap() + 3);
        assert_eq!(p.window_at(p.train[0]).len(), 8);
        let ds = p.dataset(Split::Train);
        let item = ds.get(0).unwrap();
        assert_eq!(item.x, p.window_at(p.train[0]));
    }

    #[test]
    fn horizons_and_persistence() {
        assert_eq!(
            label_horizon("label_fwd_ret_5__uniswap_v3_usdc_weth_500"),
            Some(5)
        );
        assert_eq!(label_horizon("label_fwd_spread_chg_20__a__b"), Some(20));
        assert_eq!(label_horizon("label_arb_profitable__a__b"), None);
        assert_eq!(label_horizon("ret_5"), None);
        let t = table(200);
        let p = prepare(&t, &opts(1, 0)).unwrap();
        let (pred, fallback) = p.persistence(&[12, 150, 1], 2);
        assert_eq!(pred[0], 0.0); // row 10's target is NaN
        assert_eq!(pred[1], p.raw_target[148]);
        assert_eq!(pred[2], 0.0);
        assert_eq!(fallback, 2);
    }

    #[test]
    fn lookahead_from_the_manifest_or_the_name() {
        let m = serde_json::json!({
            "config": { "latency_blocks": 3 },
            "columns": [{ "name": "label_odd__p", "kind": "label", "lookahead_blocks": 7 }],
        });
        assert_eq!(label_lookahead("label_odd__p", Some(&m)), Some(7));
        assert_eq!(label_lookahead("label_odd__p", None), None);
        assert_eq!(
            label_lookahead("label_arb_profitable__a__b", Some(&m)),
            Some(3)
        );
        assert_eq!(label_lookahead("label_arb_profitable__a__b", None), None);
        assert_eq!(label_lookahead("label_fwd_ret_5__p", None), Some(5));
        assert_eq!(
            label_lookahead("label_fwd_spread_chg_20__a__b", Some(&m)),
            Some(20)
        );
        assert_eq!(label_lookahead("p__ret_5", Some(&m)), None);
    }

    #[test]
    fn label_columns_are_refused_as_features() {
        let t = table(200);
        let mut o = opts(1, 0);
        o.features = vec!["a".into(), "label_fwd_ret_2__p".into()];
        o.target = "b".into();
        let err = prepare(&t, &o).unwrap_err().to_string();
        assert!(
            err.contains("label columns cannot be features")
                && err.contains("`label_fwd_ret_2__p`"),
            "{err}"
        );
    }

    #[test]
    fn too_few_rows_names_the_worst_columns() {
        let mut t = table(20);
        t.columns[2] = vec![f64::NAN; 20];
        let err = prepare(&t, &opts(1, 0)).unwrap_err().to_string();
        assert!(err.contains("`b` (20)"), "{err}");
    }
}
