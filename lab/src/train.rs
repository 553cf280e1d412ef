//! Training a predictive model into a model directory and registering it in the store.
//!
//! The directory is the model; the registry row is read from the directory's files right after
//! training, plus its content hash. A registered name or directory is never overwritten with
//! other content: when the name is already registered, the new training goes to a hidden sibling
//! first and replaces the directory only if it reproduces the registered model byte for byte (a
//! rerun of the same deterministic training).

use std::path::{Path, PathBuf};

use dexlab_data::outdir::OutputLock;
use dexlab_models::artifact::Artifact;
use dexlab_models::{Backend, ModelKind, Task, TrainOptions, TrainReport};
use dexlab_store::{NewModel, Store};
use serde::Serialize;
use serde_json::json;
use tokio::runtime::Handle;

use crate::error::{Context, LabError, Result, refuse};
use crate::progress::{Event, Progress};

/// A training as asked for.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// A `dexlab features build` output folder.
    pub features: PathBuf,
    pub model: ModelKind,
    pub task: Task,
    /// Label column (default: the first `label_…` column of the task's kind).
    pub target: Option<String>,
    pub seed: u64,
    /// Maximum epochs (early stopping may end sooner).
    pub epochs: usize,
    /// TOML of hyperparameters.
    pub config: Option<PathBuf>,
    pub backend: Backend,
    /// Model directory (default: `models/MODEL-TASK-seedN`).
    pub out: Option<PathBuf>,
    /// Registry name (default: the directory's name).
    pub name: Option<String>,
}

impl TrainRequest {
    /// What can be refused before anything is opened: the epochs and the registry name. Returns
    /// the name and the model directory. [`train`] checks it again.
    pub fn check(&self) -> Result<(String, PathBuf)> {
        dexlab_models::training::check_epochs(self.epochs).context("--epochs")?;
        let out = self.out.clone().unwrap_or_else(|| {
            PathBuf::from("models").join(format!(
                "{}-{}-seed{}",
                self.model.as_str(),
                self.task.as_str(),
                self.seed
            ))
        });
        let name = match &self.name {
            Some(n) => n.clone(),
            None => out
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| {
                    LabError::Refused(format!("--out {} does not name a directory", out.display()))
                })?,
        };
        dexlab_store::validate_model_name(&name).with_context(|| {
            if self.name.is_some() {
                "--name".to_owned()
            } else {
                format!("the name taken from --out {}; pass --name", out.display())
            }
        })?;
        Ok((name, out))
    }
}

/// Where a model or agent went in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registered {
    pub id: i64,
    pub name: String,
    /// Absolute.
    pub dir: String,
    pub content_hash: String,
    /// `sqlite` or `postgres`.
    pub store: &'static str,
    /// `false` when the same model was already registered (a reproduced training).
    pub new: bool,
}

/// A trained and registered model.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub report: TrainReport,
    pub registered: Registered,
}

/// Trains, writes the model directory and registers it. A clash with the registry (a name or
/// directory held by other content) is refused before training when it can be told then, and
/// after it (leaving the directory as it was) when only the content tells.
///
/// Blocks on `rt` for the store: call it from outside the runtime's async threads.
pub fn train(
    req: &TrainRequest,
    store: &Store,
    rt: &Handle,
    progress: &mut dyn Progress,
) -> Result<TrainOutcome> {
    let (name, out) = req.check()?;
    // One training per model directory at a time.
    let _lock = OutputLock::acquire(&out)?;
    let dir = std::path::absolute(&out)
        .map_err(|e| LabError::io(&out, e))
        .with_context(|| format!("resolving {}", out.display()))?;
    let dir_text = dir.to_string_lossy().into_owned();

    // Before training, so that a clash costs nothing and overwrites nothing.
    let registered = rt.block_on(store.list_models())?;
    let held = registered.iter().find(|m| m.model.name == name);
    match held {
        Some(h) if h.model.dir != dir_text => refuse!(
            "model name `{name}` is already registered (model {}) for directory {}: choose \
             another --name, or --out {} to reproduce that model",
            h.id,
            h.model.dir,
            h.model.dir
        ),
        None => {
            if let Some(other) = registered.iter().find(|m| m.model.dir == dir_text) {
                refuse!(
                    "directory {dir_text} holds registered model {} `{}`: choose another --out \
                     (or --name {} to reproduce that model)",
                    other.id,
                    other.model.name,
                    other.model.name
                );
            }
        }
        Some(_) => {}
    }

    let candidate = held.map(|_| Candidate::beside(&dir)).transpose()?;
    let train_dir = candidate.as_ref().map_or(dir.clone(), |c| c.path.clone());
    let mut opts = TrainOptions::new(&req.features, &train_dir, req.model, req.task);
    opts.target = req.target.clone();
    opts.seed = req.seed;
    opts.epochs = req.epochs;
    opts.config = req.config.clone();
    opts.backend = req.backend;
    let mut report = dexlab_models::train(&opts)?;
    let content_hash = dexlab_store::content_hash(&train_dir)?;
    if let (Some(h), Some(c)) = (held, candidate) {
        if h.model.content_hash != content_hash {
            drop(c);
            refuse!(
                "model `{name}` is already registered (model {}, directory {}) with other \
                 content: this training gave {}, the registry holds {}; the directory was left \
                 as it was. Train under another --name and --out to keep both",
                h.id,
                h.model.dir,
                crate::short(&content_hash),
                crate::short(&h.model.content_hash)
            );
        }
        // The same bytes: put them in place (this restores a deleted or edited directory).
        c.replace(&dir)?;
        report.model_dir = out.clone();
    }
    let artifact = Artifact::read(&dir)?;
    let new = registry_row(
        &name,
        &dir_text,
        content_hash,
        &artifact,
        report.train_seconds,
    )?;
    let id = rt.block_on(store.register_model(&new)).with_context(|| {
        format!(
            "registering model `{name}` in the {} store",
            store.backend()
        )
    })?;
    // Views of the metrics and predictions; the registry's content hash leaves them out.
    if let Err(e) = dexlab_report::write_model_plots(&dir) {
        progress.event(Event::Warning(&format!("model plots not written: {e}")));
    }
    Ok(TrainOutcome {
        report,
        registered: Registered {
            id,
            name,
            dir: dir_text,
            content_hash: new.content_hash,
            store: store.backend(),
            new: held.is_none(),
        },
    })
}

fn to_json<T: Serialize>(what: &str, v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| LabError::json(what, e))
}

/// The registry row of a model directory, from its files.
fn registry_row(
    name: &str,
    dir: &str,
    content_hash: String,
    art: &Artifact,
    train_seconds: f64,
) -> Result<NewModel> {
    let m = &art.metrics;
    Ok(NewModel {
        name: name.to_owned(),
        kind: art.config.model_kind.into(),
        task: art.schema.task.into(),
        target: art.schema.target.clone(),
        dir: dir.to_owned(),
        content_hash,
        features: art.schema.features.clone(),
        window: u32::try_from(art.schema.window)
            .map_err(|_| LabError::Refused(format!("window {} is too long", art.schema.window)))?,
        seed: art.config.seed,
        backend: art.config.backend.as_str().to_owned(),
        dataset_hash: art.dataset.dataset_hash.clone(),
        git_commit: art.config.git_commit.clone(),
        config: to_json("config", &art.config)?,
        dataset: to_json("dataset", &art.dataset)?,
        training: json!({
            "epochs_run": m.epochs_run,
            "best_epoch": m.best_epoch,
            "best_valid_loss": m.best_valid_loss,
            "stopped_early": m.stopped_early,
        }),
        metrics: to_json("metrics", &m.test)?,
        train_seconds: Some(train_seconds).filter(|s| s.is_finite()),
        created_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    })
}

/// A model trained beside its registered directory; removed unless it replaces it.
struct Candidate {
    path: PathBuf,
    placed: bool,
}

impl Candidate {
    fn beside(dir: &Path) -> Result<Self> {
        let name = dir
            .file_name()
            .ok_or_else(|| LabError::Refused("the model directory has no name".into()))?;
        let parent = dir.parent().unwrap_or(Path::new("."));
        let path = parent.join(format!(
            ".{}.candidate-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(|e| LabError::io(&path, e))?;
        }
        Ok(Self {
            path,
            placed: false,
        })
    }

    fn replace(mut self, dir: &Path) -> Result<()> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .map_err(|e| LabError::io(dir, e))
                .with_context(|| format!("replacing {}", dir.display()))?;
        }
        std::fs::rename(&self.path, dir)
            .map_err(|e| LabError::io(&self.path, e))
            .with_context(|| format!("moving the model into {}", dir.display()))?;
        self.placed = true;
        Ok(())
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        if !self.placed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
