//! A loaded model as the strategies' [`Scorer`]: how `model-gated` in a backtest, the optimiser
//! and the live engine all call the same [`Predictor`].

use std::path::Path;
use std::sync::Arc;

use dexlab_strategy::{ModelHandle, Scorer};
use sha2::{Digest, Sha256};

use crate::artifact::WEIGHTS;
use crate::inference::Predictor;
use crate::{Backend, ModelError, Result};

/// A [`Predictor`] with the id results and checkpoints record.
#[derive(Debug)]
pub struct ModelScorer {
    predictor: Predictor,
    id: String,
}

impl ModelScorer {
    /// Loads a model directory. Its feature columns are checked by the strategy that uses it,
    /// against what it can compute.
    pub fn load(dir: &Path) -> Result<Self> {
        let predictor = Predictor::load_unchecked(dir, Backend::default())?;
        let weights = dir.join(WEIGHTS);
        let bytes = std::fs::read(&weights).map_err(|source| ModelError::Io {
            path: weights.clone(),
            source,
        })?;
        let name = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let id = format!("{name}@{}", &hex::encode(Sha256::digest(&bytes))[..12]);
        Ok(Self { predictor, id })
    }

    pub fn predictor(&self) -> &Predictor {
        &self.predictor
    }

    /// The shared handle strategies take (through `TradingEnv::model`).
    pub fn into_handle(self) -> ModelHandle {
        ModelHandle::new(Arc::new(self))
    }
}

impl Scorer for ModelScorer {
    fn id(&self) -> String {
        self.id.clone()
    }
    fn features(&self) -> &[String] {
        &self.predictor.schema().features
    }
    fn window(&self) -> usize {
        self.predictor.schema().window
    }
    fn target(&self) -> &str {
        &self.predictor.schema().target
    }
    fn score(&self, rows: &[&[f64]]) -> std::result::Result<f64, String> {
        self.predictor
            .predict_window(rows)
            .map_err(|e| e.to_string())
    }
}
