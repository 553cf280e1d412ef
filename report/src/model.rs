//! Charts of one trained model: its learning curve and its test predictions against what was
//! realised, read from a `dexlab train` model directory.
//!
//! The crate does not depend on `dexlab-models` (nor on burn): it reads the directory's files
//! (`metrics.json`, `schema.json`, `config.json`, `predictions.csv`) with serde structs of only
//! the fields it draws, so a model directory written by a later version with more fields still
//! plots.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::charts::Chart;
use crate::{ReportError, ReportOptions, ensure_font, write_png, write_svg};

/// File stems the model charts are written under, in the order [`write_model_plots`] returns them.
pub const LEARNING_CURVE: &str = "learning_curve";
pub const PREDICTED_VS_REALISED: &str = "predicted_vs_realised";

/// Everything the two model charts show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelPlots {
    /// Shown after each chart's title, e.g. `"mlp on label_fwd_ret_1__pool"`.
    pub title: String,
    /// The y-axis label of the learning curve, e.g. `"MSE (standardised target)"`.
    pub loss: String,
    /// One entry per epoch run, in order.
    pub curve: Vec<EpochLoss>,
    /// The epoch whose weights were kept (1-based); 0 when unknown.
    pub best_epoch: usize,
    pub test: TestPredictions,
}

/// Training and validation loss of one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochLoss {
    pub epoch: usize,
    pub train: f64,
    pub valid: f64,
}

/// The test split, as the predicted-vs-realised chart draws it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TestPredictions {
    /// A scatter of realised (x) against predicted (y) target, with the `y = x` line and the
    /// zero predictor.
    Regression {
        /// The target's name, for the axes.
        target: String,
        /// `(realised, predicted)` per test sample.
        points: Vec<(f64, f64)>,
        mse: Option<f64>,
        /// MSE of the baseline that predicts 0.
        zero_mse: Option<f64>,
    },
    /// A reliability diagram from the calibration bins, over a histogram of their counts.
    Classification {
        target: String,
        bins: Vec<CalibrationBin>,
        /// Share of positives in the test split.
        positive_rate: Option<f64>,
        log_loss: Option<f64>,
        auc: Option<f64>,
    },
}

/// One bin of predicted probabilities `[lo, hi)`, as `metrics.json` stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    pub lo: f64,
    pub hi: f64,
    pub count: usize,
    pub mean_predicted: Option<f64>,
    pub observed_rate: Option<f64>,
}

// The parts of a model directory's files that the charts use.

#[derive(Deserialize)]
struct MetricsFile {
    curve: Vec<CurveRecord>,
    best_epoch: usize,
    test: TestFile,
}

#[derive(Deserialize)]
struct CurveRecord {
    epoch: usize,
    train_loss: f64,
    valid_loss: f64,
}

#[derive(Deserialize)]
struct TestFile {
    model: MetricsRecord,
    #[serde(default)]
    baselines: Vec<BaselineRecord>,
}

#[derive(Deserialize)]
struct BaselineRecord {
    name: String,
    metrics: MetricsRecord,
}

/// Regression and classification metrics in one: `metrics.json` stores either, untagged.
#[derive(Deserialize)]
struct MetricsRecord {
    mse: Option<f64>,
    log_loss: Option<f64>,
    auc: Option<f64>,
    positive_rate: Option<f64>,
    calibration: Option<Vec<CalibrationBin>>,
}

#[derive(Deserialize)]
struct SchemaFile {
    target: String,
    task: String,
}

#[derive(Deserialize)]
struct ConfigFile {
    model_kind: String,
}

impl ModelPlots {
    /// Reads a model directory. `metrics.json` and `schema.json` are required; without
    /// `config.json` the title names the target only, and a regression model without
    /// `predictions.csv` (written since the test predictions are kept) gets an empty scatter.
    pub fn read(model_dir: &Path) -> Result<Self, ReportError> {
        let metrics: MetricsFile = read_json(&model_dir.join("metrics.json"))?;
        let schema: SchemaFile = read_json(&model_dir.join("schema.json"))?;
        let config = model_dir.join("config.json");
        let kind = if config.exists() {
            Some(read_json::<ConfigFile>(&config)?.model_kind)
        } else {
            None
        };
        let title = match kind {
            Some(kind) => format!("{kind} on {}", schema.target),
            None => schema.target.clone(),
        };
        let curve = metrics
            .curve
            .iter()
            .map(|c| EpochLoss {
                epoch: c.epoch,
                train: c.train_loss,
                valid: c.valid_loss,
            })
            .collect();
        let model = &metrics.test.model;
        let (loss, test) = match schema.task.as_str() {
            "classification" => (
                "log loss (binary cross-entropy)".to_string(),
                TestPredictions::Classification {
                    target: schema.target,
                    bins: model.calibration.clone().unwrap_or_default(),
                    positive_rate: model.positive_rate,
                    log_loss: model.log_loss,
                    auc: model.auc,
                },
            ),
            "regression" => {
                let csv = model_dir.join("predictions.csv");
                let points = if csv.exists() {
                    read_predictions(&csv)?
                } else {
                    Vec::new()
                };
                let zero_mse = metrics
                    .test
                    .baselines
                    .iter()
                    .find(|b| b.name == "zero")
                    .and_then(|b| b.metrics.mse);
                (
                    "MSE (standardised target)".to_string(),
                    TestPredictions::Regression {
                        target: schema.target,
                        points,
                        mse: model.mse,
                        zero_mse,
                    },
                )
            }
            other => {
                return Err(ReportError::Parse {
                    path: model_dir.join("schema.json"),
                    message: format!("unknown task `{other}`"),
                });
            }
        };
        Ok(Self {
            title,
            loss,
            curve,
            best_epoch: metrics.best_epoch,
            test,
        })
    }
}

/// Reads the model directory `model_dir` and writes `learning_curve.{png,svg}` and
/// `predicted_vs_realised.{png,svg}` into it, at the default [`ReportOptions`]. Returns the paths
/// written.
pub fn write_model_plots(model_dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    // Before reading anything, so a machine without fonts fails the same way for every input.
    ensure_font()?;
    let plots = ModelPlots::read(model_dir)?;
    write_model_plots_with(&plots, model_dir, &ReportOptions::default())
}

/// Writes the two model charts (PNG and SVG each) of `plots` into `out_dir`, creating it.
pub fn write_model_plots_with(
    plots: &ModelPlots,
    out_dir: &Path,
    options: &ReportOptions,
) -> Result<Vec<PathBuf>, ReportError> {
    ensure_font()?;
    std::fs::create_dir_all(out_dir).map_err(|source| ReportError::CreateDir {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let size = options.size();
    let charts = [
        (LEARNING_CURVE, Chart::LearningCurve { plots }),
        (PREDICTED_VS_REALISED, Chart::PredictedVsRealised { plots }),
    ];
    let mut written = Vec::with_capacity(4);
    for (stem, chart) in charts {
        let png = out_dir.join(format!("{stem}.png"));
        write_png(&chart, &png, size)?;
        written.push(png);
        let svg = out_dir.join(format!("{stem}.svg"));
        write_svg(&chart, &svg, size)?;
        written.push(svg);
    }
    Ok(written)
}

fn read_text(path: &Path) -> Result<String, ReportError> {
    std::fs::read_to_string(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ReportError> {
    serde_json::from_str(&read_text(path)?).map_err(|e| ReportError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// `(realised, predicted)` from a `block,realised,predicted` file; columns found by name.
fn read_predictions(path: &Path) -> Result<Vec<(f64, f64)>, ReportError> {
    let text = read_text(path)?;
    let err = |line: usize, message: String| ReportError::Parse {
        path: path.to_path_buf(),
        message: format!("line {line}: {message}"),
    };
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = match lines.next() {
        Some((_, h)) => h.split(',').map(str::trim).collect(),
        None => return Ok(Vec::new()),
    };
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| err(1, format!("no `{name}` column in the header")))
    };
    let (realised, predicted) = (column("realised")?, column("predicted")?);
    let mut points = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let value = |c: usize| -> Result<f64, ReportError> {
            let field = fields
                .get(c)
                .ok_or_else(|| err(i + 1, format!("expected {} fields", header.len())))?;
            field
                .parse()
                .map_err(|e| err(i + 1, format!("`{field}`: {e}")))
        };
        points.push((value(realised)?, value(predicted)?));
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_are_read_by_column_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.csv");
        std::fs::write(
            &path,
            "predicted,block,realised\n0.5,1,1.0\n-2e-3,2,0.25\n\n",
        )
        .unwrap();
        assert_eq!(
            read_predictions(&path).unwrap(),
            vec![(1.0, 0.5), (0.25, -0.002)]
        );
        std::fs::write(&path, "block,realised,predicted\n1,x,0.5\n").unwrap();
        let e = read_predictions(&path).unwrap_err().to_string();
        assert!(
            e.contains("p.csv") && e.contains("line 2") && e.contains("`x`"),
            "{e}"
        );
        std::fs::write(&path, "block,predicted\n1,0.5\n").unwrap();
        let e = read_predictions(&path).unwrap_err().to_string();
        assert!(e.contains("no `realised` column"), "{e}");
    }
}
