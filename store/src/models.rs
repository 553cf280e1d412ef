//! The model registry: one row per trained model directory.
//!
//! The directory stays the model (weights, schema, normaliser, metrics); the row is what the
//! workbench needs to list, show and compare models without opening every directory, and the
//! content hash that tells whether the directory still holds what was registered.
//!
//! A name and a directory each belong to one model. Registering again is a no-op when name,
//! directory and content hash all match (re-running a deterministic training), and an error
//! otherwise, so that a row never silently starts describing other weights. Names cannot be all
//! digits, so [`Store::model_by_name_or_id`] is never ambiguous.
//!
//! A model taken out of service is retired ([`Store::retire_model`]), once, with who did it and
//! why: its row stays (deployments and sessions refer to it), but it may not be deployed again.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;

use crate::{
    RegisteredKind, RegisteredTask, Result, Store, StoreError, db, get, json_column, optional_f64,
    to_json,
};

/// The start of every query that feeds `model_from_row`, as a literal for `concat!`.
macro_rules! select_models {
    () => {
        "SELECT id, name, kind, task, target, dir, content_hash, features, window_size, seed,
                backend, dataset_hash, git_commit, config, dataset, training, metrics,
                train_seconds, created_at, retired_at, retired_by, retired_reason
         FROM models "
    };
}

/// A trained model about to be registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewModel {
    /// Unique; not empty, no surrounding whitespace, not all digits.
    pub name: String,
    /// A predictive model's architecture or an RL agent's algorithm.
    pub kind: RegisteredKind,
    /// `regression` or `classification` for the predictive models, `rl` for agents.
    pub task: RegisteredTask,
    /// The label column the model predicts.
    pub target: String,
    /// The model directory, as an absolute path. Unique.
    pub dir: String,
    /// [`content_hash`] of the directory's files when it was registered.
    pub content_hash: String,
    /// Feature columns, in the order the model reads them.
    pub features: Vec<String>,
    /// Rows per sample.
    pub window: u32,
    pub seed: u64,
    /// The compute backend it was trained on (`flex`, `ndarray`, `wgpu`, `cuda`).
    pub backend: String,
    /// Hash of the chain dataset the features were computed from; `None` when unknown.
    pub dataset_hash: Option<String>,
    /// `git rev-parse HEAD` where it was trained, or `"unknown"`.
    pub git_commit: String,
    /// Model and training configuration (the directory's `config.json`).
    pub config: Value,
    /// Features folder, rows and blocks of each split (the directory's `dataset.json`).
    pub dataset: Value,
    /// Epochs run, best epoch, best validation loss, early stop.
    pub training: Value,
    /// Test-split metrics of the model and of each baseline.
    pub metrics: Value,
    /// Wall-clock seconds of training, when known.
    pub train_seconds: Option<f64>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A registered model: its id, everything it was registered with, and its retirement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRow {
    pub id: i64,
    #[serde(flatten)]
    pub model: NewModel,
    /// Set once by [`Store::retire_model`]; `None` while the model is in service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<Retired>,
}

/// When, by whom and why a model was taken out of service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    /// Unix seconds.
    pub at: i64,
    pub by: String,
    pub reason: String,
}

impl Store {
    /// Registers a model and returns its id.
    ///
    /// Registering a name that is already registered with the same directory and content hash
    /// returns the existing id and changes nothing. Any other clash is an error that names the
    /// model holding the name or the directory: [`StoreError::ModelNameTaken`],
    /// [`StoreError::ModelDirTaken`].
    pub async fn register_model(&self, m: &NewModel) -> Result<i64> {
        const OP: &str = "register_model";
        let target = || format!("model {:?}", m.name);
        check_name(OP, &m.name)?;
        let features = serde_json::to_value(&m.features).map_err(|source| StoreError::Encode {
            op: OP,
            target: target(),
            field: "features",
            source,
        })?;
        let features = to_json(OP, &target, "features", &features)?;
        let config = to_json(OP, &target, "config", &m.config)?;
        let dataset = to_json(OP, &target, "dataset", &m.dataset)?;
        let training = to_json(OP, &target, "training", &m.training)?;
        let metrics = to_json(OP, &target, "metrics", &m.metrics)?;
        let (has_secs, secs) = optional_f64(OP, &target, "train_seconds", m.train_seconds)?;
        // DO NOTHING on either unique key (name, dir), then say which one clashed: no
        // transaction to abort, and a concurrent registration of the same model is a no-op.
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO models (name, kind, task, target, dir, content_hash, features,
                                 window_size, seed, backend, dataset_hash, git_commit, config,
                                 dataset, training, metrics, train_seconds, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                     CASE WHEN $17 = 1 THEN $18 END, $19)
             ON CONFLICT DO NOTHING
             RETURNING id",
        )
        .bind(&m.name)
        .bind(m.kind.as_str())
        .bind(m.task.as_str())
        .bind(&m.target)
        .bind(&m.dir)
        .bind(&m.content_hash)
        .bind(features)
        .bind(i64::from(m.window))
        .bind(m.seed.to_string())
        .bind(&m.backend)
        .bind(m.dataset_hash.as_deref())
        .bind(&m.git_commit)
        .bind(config)
        .bind(dataset)
        .bind(training)
        .bind(metrics)
        .bind(has_secs)
        .bind(secs)
        .bind(m.created_at)
        .fetch_optional(&self.pool)
        .await
        .map_err(db(OP, target))?;
        if let Some(id) = inserted {
            return Ok(id);
        }

        if let Some(held) = self.model_where(OP, "name", &m.name).await? {
            let reason = if held.model.dir != m.dir {
                format!("this model's directory is {}", m.dir)
            } else if held.model.content_hash != m.content_hash {
                format!(
                    "its content differs (registered {}, this model {})",
                    short(&held.model.content_hash),
                    short(&m.content_hash)
                )
            } else {
                return Ok(held.id);
            };
            return Err(StoreError::ModelNameTaken {
                op: OP,
                name: m.name.clone(),
                id: held.id,
                dir: held.model.dir,
                reason,
            });
        }
        if let Some(held) = self.model_where(OP, "dir", &m.dir).await? {
            return Err(StoreError::ModelDirTaken {
                op: OP,
                dir: m.dir.clone(),
                id: held.id,
                name: held.model.name,
            });
        }
        // Only name and dir are unique and rows are never deleted, so one of them was found.
        Err(StoreError::NotFound {
            op: OP,
            target: format!("the model that holds the name or directory of {}", target()),
        })
    }

    /// Every registered model, newest first (by `created_at`, then id).
    pub async fn list_models(&self) -> Result<Vec<ModelRow>> {
        const OP: &str = "list_models";
        let rows = sqlx::query(concat!(
            select_models!(),
            "ORDER BY created_at DESC, id DESC"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db(OP, || "all models".to_owned()))?;
        rows.iter().map(|row| model_from_row(OP, row)).collect()
    }

    /// The model with this id (all digits) or name (anything else; names are never all digits).
    pub async fn model_by_name_or_id(&self, name_or_id: &str) -> Result<Option<ModelRow>> {
        self.find_model("model_by_name_or_id", name_or_id).await
    }

    /// Takes model `name_or_id` (as for [`Store::model_by_name_or_id`]) out of service at `at`
    /// (unix seconds), recording who did it and why, and returns its row. The row stays; the
    /// model may no longer be deployed ([`Store::add_deployment`]). A model is retired once:
    /// retiring it again is [`StoreError::ModelRetired`], saying when and by whom it was; an
    /// unknown model is [`StoreError::NotFound`].
    ///
    /// [`Store::add_deployment`]: crate::Store::add_deployment
    pub async fn retire_model(
        &self,
        name_or_id: &str,
        by: &str,
        reason: &str,
        at: i64,
    ) -> Result<ModelRow> {
        const OP: &str = "retire_model";
        let target = || format!("model {name_or_id:?}");
        let missing = || StoreError::NotFound {
            op: OP,
            target: target(),
        };
        let model = self.find_model(OP, name_or_id).await?.ok_or_else(missing)?;
        if let Some(error) = retired_error(OP, &model, "a model is retired once") {
            return Err(error);
        }
        // Only a model in service: of two retirements at once, one is refused below.
        let done = sqlx::query(
            "UPDATE models SET retired_at = $1, retired_by = $2, retired_reason = $3
             WHERE id = $4 AND retired_at IS NULL",
        )
        .bind(at)
        .bind(by)
        .bind(reason)
        .bind(model.id)
        .execute(&self.pool)
        .await
        .map_err(db(OP, target))?;
        let now = self
            .find_model(OP, &model.id.to_string())
            .await?
            .ok_or_else(missing)?;
        if done.rows_affected() == 0
            && let Some(error) = retired_error(OP, &now, "a model is retired once")
        {
            return Err(error);
        }
        Ok(now)
    }

    async fn find_model(&self, op: &'static str, name_or_id: &str) -> Result<Option<ModelRow>> {
        let key = name_or_id.trim();
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
            // Too large for an id: no such model.
            let Ok(id) = key.parse::<i64>() else {
                return Ok(None);
            };
            let row = sqlx::query(concat!(select_models!(), "WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db(op, || format!("model {id}")))?;
            return row.map(|row| model_from_row(op, &row)).transpose();
        }
        self.model_where(op, "name", name_or_id).await
    }

    async fn model_where(
        &self,
        op: &'static str,
        column: &'static str,
        value: &str,
    ) -> Result<Option<ModelRow>> {
        let sql = match column {
            "name" => concat!(select_models!(), "WHERE name = $1"),
            "dir" => concat!(select_models!(), "WHERE dir = $1"),
            other => unreachable!("models are looked up by name or dir, not {other}"),
        };
        let row = sqlx::query(sql)
            .bind(value)
            .fetch_optional(&self.pool)
            .await
            .map_err(db(op, || format!("model with {column} {value:?}")))?;
        row.map(|row| model_from_row(op, &row)).transpose()
    }
}

/// SHA-256 (hex) of what a model directory holds: every regular file directly in `dir` but
/// hidden ones, by name. Each file's name and length go in before its bytes, so renaming a file
/// or moving bytes between files changes the hash. Subdirectories are not looked into.
///
/// Two things are left out, so that the same training reproduces the same hash: the plots
/// (`.png`, `.svg`: views of the metrics and predictions, whose bytes depend on the fonts) and
/// the `git_commit` of `config.json` (the same model trained after an unrelated commit is the
/// same model).
pub fn content_hash(dir: &Path) -> Result<String> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| StoreError::Hash { path, source }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err(dir))? {
        let entry = entry.map_err(err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let plot = name.ends_with(".png") || name.ends_with(".svg");
        if !name.starts_with('.')
            && !plot
            && entry.file_type().map_err(err(&entry.path()))?.is_file()
        {
            files.push(name);
        }
    }
    files.sort_unstable();
    let mut h = Sha256::new();
    for name in files {
        let path = dir.join(&name);
        let mut bytes = std::fs::read(&path).map_err(err(&path))?;
        if name == "config.json"
            && let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && let Some(obj) = v.as_object_mut()
            && obj.remove("git_commit").is_some()
        {
            bytes = serde_json::to_vec(&v).expect("a JSON value serialises");
        }
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(hex::encode(h.finalize()))
}

/// Whether the registry takes `name`: not empty, no surrounding whitespace, not all digits (which
/// would read as an id). [`Store::register_model`] checks it too; this lets a caller check first.
pub fn validate_model_name(name: &str) -> Result<()> {
    check_name("validate_model_name", name)
}

/// Whether an experiment may be named `name`: the same rules as models' names (`experiments
/// show` and `report` read an all-digit argument as an id). [`Store::create_experiment`] checks
/// it too; this lets a caller check before any work.
///
/// [`Store::create_experiment`]: crate::Store::create_experiment
pub fn validate_experiment_name(name: &str) -> Result<()> {
    check_name_of("validate_experiment_name", "experiment", name)
}

fn check_name(op: &'static str, name: &str) -> Result<()> {
    check_name_of(op, "model", name)
}

pub(crate) fn check_name_of(op: &'static str, what: &'static str, name: &str) -> Result<()> {
    let reason = if name.trim().is_empty() {
        "it is empty"
    } else if name.trim() != name {
        "it starts or ends with whitespace"
    } else if name.bytes().all(|b| b.is_ascii_digit()) {
        "it is all digits, which would read as an id"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidName {
        op,
        what,
        name: name.to_owned(),
        reason,
    })
}

/// [`StoreError::ModelRetired`] for `model` if it is retired, saying why that stops `op`.
pub(crate) fn retired_error(
    op: &'static str,
    model: &ModelRow,
    consequence: &'static str,
) -> Option<StoreError> {
    model.retired.as_ref().map(|r| StoreError::ModelRetired {
        op,
        id: model.id,
        name: model.model.name.clone(),
        at: r.at,
        by: r.by.clone(),
        reason: r.reason.clone(),
        consequence,
    })
}

/// The retirement columns of a models row: all three set, or none.
pub(crate) fn retired_from_row(
    op: &'static str,
    row: &AnyRow,
    target: impl Fn() -> String,
) -> Result<Option<Retired>> {
    let at: Option<i64> = get(op, row, "retired_at")?;
    let by: Option<String> = get(op, row, "retired_by")?;
    let reason: Option<String> = get(op, row, "retired_reason")?;
    match (at, by, reason) {
        (None, None, None) => Ok(None),
        (Some(at), Some(by), Some(reason)) => Ok(Some(Retired { at, by, reason })),
        (at, by, reason) => Err(StoreError::Corrupt {
            op,
            target: target(),
            field: "retired_at",
            detail: format!(
                "retired_at {at:?}, retired_by {by:?} and retired_reason {reason:?} are set \
                 together or not at all"
            ),
        }),
    }
}

/// The first 12 hex digits, enough to tell hashes apart in a message.
fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

fn model_from_row(op: &'static str, row: &AnyRow) -> Result<ModelRow> {
    let id: i64 = get(op, row, "id")?;
    let target = || format!("model {id}");
    let corrupt = |field, detail: String| StoreError::Corrupt {
        op,
        target: target(),
        field,
        detail,
    };
    let features = json_column(op, row, "features", target)?;
    let features: Vec<String> =
        serde_json::from_value(features).map_err(|e| corrupt("features", e.to_string()))?;
    let window: i64 = get(op, row, "window_size")?;
    let seed: String = get(op, row, "seed")?;
    Ok(ModelRow {
        id,
        model: NewModel {
            name: get(op, row, "name")?,
            kind: crate::name_column(op, row, "kind", target, RegisteredKind::from_name)?,
            task: crate::name_column(op, row, "task", target, RegisteredTask::from_name)?,
            target: get(op, row, "target")?,
            dir: get(op, row, "dir")?,
            content_hash: get(op, row, "content_hash")?,
            features,
            window: u32::try_from(window)
                .map_err(|_| corrupt("window_size", format!("{window} is not a row count")))?,
            seed: seed
                .parse()
                .map_err(|e| corrupt("seed", format!("{seed:?}: {e}")))?,
            backend: get(op, row, "backend")?,
            dataset_hash: get(op, row, "dataset_hash")?,
            git_commit: get(op, row, "git_commit")?,
            config: json_column(op, row, "config", target)?,
            dataset: json_column(op, row, "dataset", target)?,
            training: json_column(op, row, "training", target)?,
            metrics: json_column(op, row, "metrics", target)?,
            train_seconds: get(op, row, "train_seconds")?,
            created_at: get(op, row, "created_at")?,
        },
        retired: retired_from_row(op, row, target)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_be_ids_or_typos_are_refused() {
        for ok in ["lin", "mlp-regression-seed1", "2024-gru", "v2"] {
            assert!(check_name("t", ok).is_ok(), "{ok}");
        }
        for bad in ["", "  ", "17", " lin", "lin\n"] {
            let err = check_name("t", bad).unwrap_err();
            assert!(matches!(err, StoreError::InvalidName { .. }), "{bad:?}");
        }
        assert!(
            check_name("t", "17")
                .unwrap_err()
                .to_string()
                .contains("all digits")
        );
    }

    #[test]
    fn a_model_in_service_serialises_without_retired() {
        let row = ModelRow {
            id: 3,
            model: NewModel {
                name: "lin".into(),
                kind: RegisteredKind::Model(dexlab_types::ModelKind::Mlp),
                task: RegisteredTask::Regression,
                target: "label".into(),
                dir: "/models/lin".into(),
                content_hash: "ab".repeat(32),
                features: vec!["ret_1".into()],
                window: 8,
                seed: 1,
                backend: "flex".into(),
                dataset_hash: None,
                git_commit: "0bd467e".into(),
                config: serde_json::json!({}),
                dataset: serde_json::json!({}),
                training: serde_json::json!({}),
                metrics: serde_json::json!({}),
                train_seconds: None,
                created_at: 1,
            },
            retired: None,
        };
        let json = serde_json::to_value(&row).unwrap();
        assert!(json.get("retired").is_none(), "{json}");
        assert_eq!(serde_json::from_value::<ModelRow>(json).unwrap(), row);

        let retired = ModelRow {
            retired: Some(Retired {
                at: 5,
                by: "alice".into(),
                reason: "overfit".into(),
            }),
            ..row
        };
        let json = serde_json::to_value(&retired).unwrap();
        assert_eq!(json["retired"]["by"], "alice");
        assert_eq!(json["name"], "lin");
        assert_eq!(serde_json::from_value::<ModelRow>(json).unwrap(), retired);
    }

    #[test]
    fn content_hash_covers_names_lengths_and_bytes_of_the_visible_files() {
        let dir = tempfile::tempdir().unwrap();
        let write =
            |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes).unwrap();
        write("a.json", b"ab");
        write("b.bin", b"c");
        let h = content_hash(dir.path()).unwrap();
        assert_eq!(h.len(), 64);
        // Hidden files and subdirectories do not count.
        write(".a.json.swp", b"editor");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(content_hash(dir.path()).unwrap(), h);
        // The same bytes split differently between the files do, and so does a new file.
        write("a.json", b"a");
        write("b.bin", b"bc");
        let split = content_hash(dir.path()).unwrap();
        assert_ne!(split, h);
        write("README", b"");
        assert_ne!(content_hash(dir.path()).unwrap(), split);
        let gone = dir.path().join("missing");
        let err = content_hash(&gone).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
