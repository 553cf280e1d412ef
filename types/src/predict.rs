//! A predictive model's test-split metrics, next to its naive baselines: written by
//! `dexlab-models` into the model directory and the model registry, read by whoever compares
//! models.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    pub n: usize,
    pub mse: f64,
    pub mae: f64,
    /// `None` when every target is exactly 0.
    pub directional_accuracy: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// Predicted probabilities in `[lo, hi)` (the last bin includes 1).
    pub lo: f64,
    pub hi: f64,
    pub count: usize,
    pub mean_predicted: Option<f64>,
    pub observed_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationMetrics {
    pub n: usize,
    pub positive_rate: f64,
    pub accuracy: f64,
    /// `None` when the split has one class only.
    pub auc: Option<f64>,
    pub log_loss: f64,
    pub calibration: Vec<CalibrationBin>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Metrics {
    Regression(RegressionMetrics),
    Classification(ClassificationMetrics),
}

impl Metrics {
    /// The loss the task trains on: MSE, or log loss.
    pub fn loss(&self) -> f64 {
        match self {
            Metrics::Regression(m) => m.mse,
            Metrics::Classification(m) => m.log_loss,
        }
    }

    pub fn regression(&self) -> Option<&RegressionMetrics> {
        match self {
            Metrics::Regression(m) => Some(m),
            Metrics::Classification(_) => None,
        }
    }

    pub fn classification(&self) -> Option<&ClassificationMetrics> {
        match self {
            Metrics::Classification(m) => Some(m),
            Metrics::Regression(_) => None,
        }
    }

    /// Every number in these metrics is finite.
    pub fn is_finite(&self) -> bool {
        let opt = |v: Option<f64>| v.is_none_or(f64::is_finite);
        match self {
            Metrics::Regression(m) => {
                m.mse.is_finite() && m.mae.is_finite() && opt(m.directional_accuracy)
            }
            Metrics::Classification(m) => {
                m.accuracy.is_finite()
                    && m.log_loss.is_finite()
                    && opt(m.auc)
                    && m.calibration
                        .iter()
                        .all(|b| opt(b.mean_predicted) && opt(b.observed_rate))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub name: String,
    pub description: String,
    pub metrics: Metrics,
}

/// The test split scored for the model and next to its baselines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestReport {
    pub rows: usize,
    pub first_block: i64,
    pub last_block: i64,
    pub model: Metrics,
    pub baselines: Vec<Baseline>,
}

impl TestReport {
    pub fn baseline(&self, name: &str) -> Option<&Metrics> {
        self.baselines
            .iter()
            .find(|b| b.name == name)
            .map(|b| &b.metrics)
    }
}
