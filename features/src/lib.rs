//! dexlab-features: feature and label datasets from dexlab chain data, with Polars.
//!
//! [`pipeline`] is the lazy Polars plan (one row per block; per-pool features, cross-venue
//! spreads, labels named `label_…`); [`depth`] computes depth within ±x bps from the exact replayed
//! pool state; [`leakage`] is the canary that perturbs everything after a block and requires every
//! feature at or before it to stay the same. [`build`] runs all three on a dataset folder and writes
//! `features.parquet` with a manifest from which the same dataset can be rebuilt.
//!
//! This crate is the only one that depends on Polars, so the backtester and the live engine do
//! not have to.

pub mod config;
pub mod depth;
pub mod leakage;
pub mod pipeline;

use std::fs;
use std::path::{Path, PathBuf};

use dexlab_data::dataset;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

pub use config::FeatureConfig;
pub use pipeline::label_lookahead;

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("invalid feature config: {0}")]
    Config(String),
    #[error(transparent)]
    Data(#[from] dexlab_data::DataError),
    #[error("polars: {0}")]
    Polars(#[from] PolarsError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("dataset {0}: has no swaps to build features from")]
    Empty(PathBuf),
    #[error("leakage: {0}")]
    Leakage(String),
    /// A feature or label that is ±inf or NaN: written, it would train and backtest on garbage.
    #[error(
        "column `{column}` is {value} at block {block}: refusing to write non-finite features or labels (a zero or negative price in the dataset's swaps?)"
    )]
    NonFinite {
        column: String,
        block: i64,
        value: f64,
    },
}

pub type Result<T, E = FeatureError> = std::result::Result<T, E>;

/// One output column.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    /// `feature`, `label` or `key`.
    pub kind: String,
    /// Labels: how many blocks after its row the label looks ([`pipeline::label_lookahead`]),
    /// the embargo a model trained on it needs. Absent in manifests written before it was
    /// recorded, and for columns that are not labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookahead_blocks: Option<u32>,
}

/// `manifest.json` of a feature dataset.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FeatureManifest {
    pub dexlab_version: String,
    pub input_dataset: String,
    /// SHA-256 over the input dataset's pools, logs, blocks and swaps files.
    pub input_hash: String,
    pub config: FeatureConfig,
    pub first_block: i64,
    pub last_block: i64,
    pub rows: usize,
    pub columns: Vec<ColumnDef>,
    /// Blocks at which the built-in leakage canary cut the data (it passed at each, or there
    /// would be no manifest).
    pub leakage_check_blocks: Vec<i64>,
}

/// Hash of what the features are computed from.
pub fn dataset_hash(root: &Path) -> Result<String> {
    Ok(dataset::content_hash(root)?)
}

fn scan(root: &Path, table: &str) -> Result<Option<LazyFrame>> {
    let files = dataset::list_chunks(root, table)?;
    if files.is_empty() {
        return Ok(None);
    }
    let lfs = files
        .iter()
        .map(|(_, _, p)| {
            LazyFrame::scan_parquet(
                PlRefPath::from(p.to_string_lossy().as_ref()),
                ScanArgsParquet::default(),
            )
        })
        .collect::<PolarsResult<Vec<_>>>()?;
    Ok(Some(concat(lfs, UnionArgs::default())?))
}

/// Reads a dataset folder into the pipeline's inputs (depth from the exact replay).
pub fn load_inputs(root: &Path, cfg: &FeatureConfig) -> Result<pipeline::Inputs> {
    let meta = dataset::read_meta(root)?;
    let swaps = scan(root, dataset::SWAPS)?.ok_or_else(|| FeatureError::Empty(root.into()))?;
    let logs = dataset::read_all_logs(root)?;
    let (Some(first), Some(last)) = (
        logs.first().map(|l| l.block_number),
        logs.last().map(|l| l.block_number),
    ) else {
        return Err(FeatureError::Empty(root.into()));
    };
    let blocks_rows = dataset::read_all_blocks(root)?;
    let first_block = blocks_rows.first().map_or(first, |b| b.number.min(first)) as i64;
    let last_block = blocks_rows.last().map_or(last, |b| b.number.max(last)) as i64;
    let blocks = match scan(root, dataset::BLOCKS)? {
        Some(b) => b,
        None => df!("block_number" => Vec::<i64>::new(), "timestamp" => Vec::<i64>::new(), "base_fee_per_gas" => Vec::<f64>::new())?.lazy(),
    };
    let labels = pipeline::pool_labels(&meta.pools);
    let snapshots = dexlab_data::snapshot::load(root)?;
    let depth = depth::depth_frame(&logs, &meta.pools, &snapshots, &labels, &cfg.depth_bps)?.lazy();
    Ok(pipeline::Inputs {
        swaps,
        blocks,
        depth,
        pools: meta.pools,
        first_block,
        last_block,
    })
}

/// A Polars error while reading the dataset's files, replaced by the error of the file that
/// does not read (with its path) when there is one.
fn name_unreadable_file(root: &Path, e: FeatureError) -> FeatureError {
    match e {
        FeatureError::Polars(p) => {
            match dataset::first_unreadable(root, &[dataset::SWAPS, dataset::BLOCKS]) {
                Some(d) => FeatureError::Data(d),
                None => FeatureError::Polars(p),
            }
        }
        other => other,
    }
}

/// Refuses ±inf and NaN in any float column, naming the column and the first block.
fn check_finite(df: &DataFrame) -> Result<()> {
    let blocks = df.column("block_number")?.cast(&DataType::Int64)?;
    let blocks = blocks.i64()?;
    for c in df.columns() {
        if !matches!(c.dtype(), DataType::Float32 | DataType::Float64) {
            continue;
        }
        let f = c.cast(&DataType::Float64)?;
        let bad = f
            .f64()?
            .iter()
            .enumerate()
            .find_map(|(i, v)| v.filter(|x| !x.is_finite()).map(|x| (i, x)));
        if let Some((i, value)) = bad {
            return Err(FeatureError::NonFinite {
                column: c.name().to_string(),
                block: blocks.get(i).unwrap_or(-1),
                value,
            });
        }
    }
    Ok(())
}

/// What a build produced.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    pub rows: usize,
    pub features: usize,
    pub labels: usize,
    pub out: PathBuf,
    pub leakage_check_blocks: Vec<i64>,
}

/// Builds `features.parquet` and `manifest.json` in `out` from the dataset in `data`, and runs
/// the leakage canary on the result; a leak fails the build.
pub fn build(data: &Path, cfg: &FeatureConfig, out: &Path) -> Result<BuildReport> {
    build_with(data, cfg, out, &mut |inputs, cuts| {
        leakage::check(inputs, cfg, cuts, None)
    })
}

/// [`build`], with the leakage canary's cuts checked by `check_leakage` (e.g. each cut on a
/// worker of a queue, `dexlab features build --nats`); it must fail as
/// [`leakage::check`] would. The canary is most of a build's work: it runs the whole pipeline
/// twice per cut.
pub fn build_with(
    data: &Path,
    cfg: &FeatureConfig,
    out: &Path,
    check_leakage: &mut dyn FnMut(&pipeline::Inputs, &[i64]) -> Result<()>,
) -> Result<BuildReport> {
    cfg.validate().map_err(FeatureError::Config)?;
    let inputs = load_inputs(data, cfg)?;
    cfg.check_span(inputs.first_block, inputs.last_block)
        .map_err(|m| FeatureError::Config(format!("{m} (dataset {})", data.display())))?;
    // Polars reads the swaps and blocks files itself and its errors do not say which file.
    let named = |e: FeatureError| name_unreadable_file(data, e);
    let mut df = pipeline::build_lazy(&inputs, cfg, None)
        .and_then(|lf| lf.collect())
        .map_err(|e| named(e.into()))?;
    check_finite(&df)?;
    let cuts = leakage::cut_points(&inputs).map_err(named)?;
    check_leakage(&inputs, &cuts).map_err(named)?;
    fs::create_dir_all(out).map_err(|source| FeatureError::Io {
        path: out.into(),
        source,
    })?;
    let path = out.join("features.parquet");
    let tmp = out.join("features.parquet.tmp");
    let file = fs::File::create(&tmp).map_err(|source| FeatureError::Io {
        path: tmp.clone(),
        source,
    })?;
    ParquetWriter::new(file)
        .with_compression(ParquetCompression::Zstd(None))
        .finish(&mut df)?;
    fs::rename(&tmp, &path).map_err(|source| FeatureError::Io {
        path: path.clone(),
        source,
    })?;
    let columns: Vec<ColumnDef> = df
        .get_column_names()
        .iter()
        .map(|n| {
            let kind = if n.starts_with("label_") {
                "label"
            } else if n.as_str() == "block_number" || n.as_str() == "timestamp" {
                "key"
            } else {
                "feature"
            };
            ColumnDef {
                name: n.to_string(),
                kind: kind.into(),
                lookahead_blocks: pipeline::label_lookahead(n, cfg),
            }
        })
        .collect();
    let manifest = FeatureManifest {
        dexlab_version: env!("CARGO_PKG_VERSION").into(),
        input_dataset: data.display().to_string(),
        input_hash: dataset_hash(data)?,
        config: cfg.clone(),
        first_block: inputs.first_block,
        last_block: inputs.last_block,
        rows: df.height(),
        columns: columns.clone(),
        leakage_check_blocks: cuts.clone(),
    };
    dataset::write_json_atomic(&out.join("manifest.json"), &manifest)?;
    Ok(BuildReport {
        rows: df.height(),
        features: columns.iter().filter(|c| c.kind == "feature").count(),
        labels: columns.iter().filter(|c| c.kind == "label").count(),
        out: out.into(),
        leakage_check_blocks: cuts,
    })
}
