//! Reload a model directory and predict from raw feature rows.
//!
//! Loading checks the caller's feature columns against `schema.json` and refuses any
//! difference (missing, extra, duplicated or reordered columns), since a model silently fed
//! columns in another order is the failure that is hardest to see later.

use std::fmt;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::artifact::{self, Artifact, Schema};
use crate::model::Model;
use crate::training::output_to_task;
use crate::{Backend, ModelError, Result};

/// A column found at another position than the model's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    pub column: String,
    pub expected: usize,
    pub given: usize,
}

/// How a list of columns differs from a model's feature schema.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaDiff {
    /// In the model's schema, not given.
    pub missing: Vec<String>,
    /// Given, not in the model's schema.
    pub extra: Vec<String>,
    /// Given more than once.
    pub duplicated: Vec<String>,
    /// Present in both, at different positions relative to the other common columns.
    pub moved: Vec<Moved>,
}

impl SchemaDiff {
    /// `None` when `given` is exactly `expected`.
    pub fn between<S: AsRef<str>>(expected: &[String], given: &[S]) -> Option<Self> {
        let given: Vec<&str> = given.iter().map(AsRef::as_ref).collect();
        if given.len() == expected.len() && given.iter().zip(expected).all(|(g, e)| *g == e) {
            return None;
        }
        let mut diff = SchemaDiff {
            missing: expected
                .iter()
                .filter(|e| !given.contains(&e.as_str()))
                .cloned()
                .collect(),
            extra: given
                .iter()
                .filter(|g| !expected.iter().any(|e| e == *g))
                .map(|g| g.to_string())
                .collect(),
            ..Default::default()
        };
        for (i, g) in given.iter().enumerate() {
            if given[..i].contains(g) && !diff.duplicated.iter().any(|d| d == g) {
                diff.duplicated.push(g.to_string());
            }
        }
        let common_expected: Vec<&str> = expected
            .iter()
            .map(String::as_str)
            .filter(|e| given.contains(e))
            .collect();
        let mut seen = Vec::new();
        let common_given: Vec<&str> = given
            .iter()
            .copied()
            .filter(|g| {
                let first = !seen.contains(g);
                seen.push(*g);
                first && common_expected.contains(g)
            })
            .collect();
        for (e, g) in common_expected.iter().zip(&common_given) {
            if e != g {
                diff.moved.push(Moved {
                    column: e.to_string(),
                    expected: expected.iter().position(|x| x == e).expect("common"),
                    given: given.iter().position(|x| x == e).expect("common"),
                });
            }
        }
        Some(diff)
    }
}

impl fmt::Display for SchemaDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| {
            v.iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!("missing columns [{}]", list(&self.missing)));
        }
        if !self.extra.is_empty() {
            parts.push(format!("extra columns [{}]", list(&self.extra)));
        }
        if !self.duplicated.is_empty() {
            parts.push(format!("duplicated columns [{}]", list(&self.duplicated)));
        }
        if !self.moved.is_empty() {
            let moved = self
                .moved
                .iter()
                .map(|m| {
                    format!(
                        "`{}` expected at {}, given at {}",
                        m.column, m.expected, m.given
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            parts.push(format!("order changed: {moved}"));
        }
        if parts.is_empty() {
            parts.push("the column lists differ".into());
        }
        f.write_str(&parts.join("; "))
    }
}

/// A loaded model directory.
#[derive(Debug)]
pub struct Predictor {
    dir: PathBuf,
    artifact: Artifact,
    model: Model,
    device: Device,
}

impl Predictor {
    /// Load `dir` on the default CPU backend, checking that `columns` are exactly the model's
    /// feature columns, in order.
    pub fn load<S: AsRef<str>>(dir: &Path, columns: &[S]) -> Result<Self> {
        let p = Self::load_unchecked(dir, Backend::default())?;
        p.check_columns(columns)?;
        Ok(p)
    }

    /// Load without a column check (to inspect a model, or with [`Self::check_columns`] later).
    pub fn load_unchecked(dir: &Path, backend: Backend) -> Result<Self> {
        let artifact = Artifact::read(dir)?;
        let device = backend.device()?;
        let model = {
            // Initialising a module may draw from the backend's global generator.
            let _guard = crate::training::rng_lock();
            artifact::load_weights(
                &artifact.config.model,
                &dir.join(artifact::WEIGHTS),
                &device,
            )?
        };
        Ok(Self {
            dir: dir.into(),
            artifact,
            model,
            device,
        })
    }

    pub fn check_columns<S: AsRef<str>>(&self, columns: &[S]) -> Result<()> {
        match SchemaDiff::between(&self.artifact.schema.features, columns) {
            None => Ok(()),
            Some(diff) => Err(ModelError::SchemaMismatch {
                dir: self.dir.clone(),
                diff,
            }),
        }
    }

    pub fn schema(&self) -> &Schema {
        &self.artifact.schema
    }

    pub fn artifact(&self) -> &Artifact {
        &self.artifact
    }

    /// Predict from one row of raw feature values in schema order: the target in its own units
    /// (regression) or the probability of 1 (classification). For window models use
    /// [`Self::predict_window`].
    pub fn predict(&self, row: &[f64]) -> Result<f64> {
        if self.artifact.schema.window != 1 {
            return Err(ModelError::Input(format!(
                "this model reads a window of {} rows: use predict_window",
                self.artifact.schema.window
            )));
        }
        self.predict_window(&[row])
    }

    /// Predict from the last `window` rows, oldest first.
    pub fn predict_window(&self, rows: &[&[f64]]) -> Result<f64> {
        let schema = &self.artifact.schema;
        let norm = &self.artifact.normalizer;
        let f = schema.features.len();
        if rows.len() != schema.window {
            return Err(ModelError::Input(format!(
                "expected {} rows, got {}",
                schema.window,
                rows.len()
            )));
        }
        let mut x = Vec::with_capacity(schema.window * f);
        for (i, row) in rows.iter().enumerate() {
            if row.len() != f {
                return Err(ModelError::Input(format!(
                    "row {i}: expected {f} values, got {}",
                    row.len()
                )));
            }
            for (c, &v) in row.iter().enumerate() {
                if !v.is_finite() {
                    return Err(ModelError::Input(format!(
                        "row {i}: feature `{}` is {v}",
                        schema.features[c]
                    )));
                }
                x.push(norm.apply(c, v));
            }
        }
        let input = Tensor::<3>::from_data(TensorData::new(x, [1, schema.window, f]), &self.device);
        let out: f32 = self.model.forward(input).reshape([1]).into_scalar(); // [1, 1] → scalar
        Ok(output_to_task(schema.task, norm, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_predictor_can_move_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Predictor>();
    }

    #[test]
    fn diff_names_missing_extra_duplicated_and_moved_columns() {
        let want = cols(&["a", "b", "c", "d"]);
        assert_eq!(SchemaDiff::between(&want, &want), None);
        let d = SchemaDiff::between(&want, &["a", "c", "b", "e"]).unwrap();
        assert_eq!(d.missing, cols(&["d"]));
        assert_eq!(d.extra, cols(&["e"]));
        assert_eq!(d.moved.len(), 2);
        let text = d.to_string();
        assert_eq!(
            text,
            "missing columns [`d`]; extra columns [`e`]; order changed: `b` expected at 1, \
             given at 2, `c` expected at 2, given at 1"
        );
        let d = SchemaDiff::between(&want, &["a", "b", "c", "d", "a"]).unwrap();
        assert_eq!(d.duplicated, cols(&["a"]));
        assert!(d.moved.is_empty() && d.missing.is_empty() && d.extra.is_empty());
        // A pure deletion shifts positions but is no order change.
        let d = SchemaDiff::between(&want, &["a", "c", "d"]).unwrap();
        assert_eq!(d.to_string(), "missing columns [`b`]");
    }
}
