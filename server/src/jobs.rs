//! Jobs: backtests, evolve runs and training runs launched from the dashboard.
//!
//! A request ([`JobRequest`]) is checked here, before it is queued: datasets and feature
//! folders are named by their path under the server's data root (never a path of the caller's
//! choosing), strategies and their parameters against the strategy registry, configs as TOML,
//! models by their registry name. The queued row ([`dexlab_store::JobRow`]) holds the checked
//! request with the absolute paths it resolved to.
//!
//! The runner ([`Jobs::start`]) claims queued jobs from the store, at most `slots` at a time,
//! and runs each as a child process of the `dexlab` binary (`dexlab backtest|evolve|train`, with
//! `--flag=value` arguments built from the checked request, so no value can become an option).
//! The server links neither genevo, burn nor Polars: the work runs in the CLI. The child gets
//! the server's `DATABASE_URL` and `DEXLAB_JOB=1`, under which it reports progress on stderr as
//! `dexlab-progress {json}` lines and ends itself when its stdin closes, so a server that dies
//! takes its jobs with it. While a job runs, the runner beats in the store every second with
//! the progress; a job whose runner stopped beating is requeued by the next runner (evolve
//! resumes from its checkpoint), and queued jobs simply wait in the table across restarts.
//! Cancelling a running job sends it SIGTERM (evolve marks its experiment interrupted), then
//! SIGKILL after a grace period.

use std::collections::VecDeque;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dexlab_store::{JobEnd, JobKind, JobRow, JobState, Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, Semaphore};
use utoipa::ToSchema;

use crate::error::ApiError;

/// How often a runner beats while a job runs (and reads its cancel flag).
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A running job whose heartbeat is this old has lost its runner.
pub const STALE_SECS: i64 = 30;
/// Claims of one job before it fails instead of being requeued again.
pub const MAX_ATTEMPTS: i64 = 3;
/// How often an idle runner looks for queued jobs (launches wake it at once).
const POLL: Duration = Duration::from_secs(2);
/// From SIGTERM to SIGKILL when a job is cancelled.
const GRACE: Duration = Duration::from_secs(10);
/// The stderr lines kept for a job's page and its error.
const TAIL_LINES: usize = 40;
/// Where the child reports progress.
pub const PROGRESS_PREFIX: &str = "dexlab-progress ";
/// Largest config accepted with a job.
const MAX_CONFIG_BYTES: usize = 32 * 1024;
/// How deep below the data root datasets are looked for.
const MAX_DEPTH: usize = 4;

/// Where the runner finds its program and its inputs, validated at start.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// The `dexlab` binary.
    pub program: PathBuf,
    /// Datasets and feature folders are named relative to it (canonical).
    pub data_root: PathBuf,
    /// Each job's folder (`{work_dir}/{id}`): its config, output and logs (canonical).
    pub work_dir: PathBuf,
    /// Jobs run at once.
    pub slots: usize,
    /// A running job whose heartbeat is this many seconds old has lost its runner and is
    /// requeued ([`STALE_SECS`] unless changed; at least 3, heartbeats are every second).
    pub stale_secs: i64,
    /// Run no job here: publish them to this queue's workers (`serve --nats`).
    pub dispatch: Option<dexlab_queue::Queue>,
    /// Extra environment of the jobs' processes.
    pub child_env: Vec<(String, String)>,
}

/// Why a jobs config was refused.
#[derive(Debug, thiserror::Error)]
pub enum JobsConfigError {
    #[error("--data-root {}: {detail}", path.display())]
    DataRoot { path: PathBuf, detail: String },
    #[error("--jobs-dir {}: {detail}", path.display())]
    WorkDir { path: PathBuf, detail: String },
    #[error("the job program {}: {detail}", path.display())]
    Program { path: PathBuf, detail: String },
    #[error("--job-slots must be 1 to 64, got {0}")]
    Slots(usize),
}

impl JobsConfig {
    /// Checks the paths (the work folder is made when missing) and makes them absolute.
    pub fn new(
        program: PathBuf,
        data_root: &Path,
        work_dir: &Path,
        slots: usize,
    ) -> Result<Self, JobsConfigError> {
        if !(1..=64).contains(&slots) {
            return Err(JobsConfigError::Slots(slots));
        }
        if !program.is_file() {
            return Err(JobsConfigError::Program {
                path: program,
                detail: "not a file".into(),
            });
        }
        let data_root = std::fs::canonicalize(data_root)
            .map_err(|e| JobsConfigError::DataRoot {
                path: data_root.to_owned(),
                detail: e.to_string(),
            })
            .and_then(|p| {
                if p.is_dir() {
                    Ok(p)
                } else {
                    Err(JobsConfigError::DataRoot {
                        path: data_root.to_owned(),
                        detail: "not a folder".into(),
                    })
                }
            })?;
        let work_err = |e: std::io::Error| JobsConfigError::WorkDir {
            path: work_dir.to_owned(),
            detail: e.to_string(),
        };
        std::fs::create_dir_all(work_dir).map_err(work_err)?;
        let work_dir = std::fs::canonicalize(work_dir).map_err(work_err)?;
        Ok(JobsConfig {
            program,
            data_root,
            work_dir,
            slots,
            stale_secs: STALE_SECS,
            dispatch: None,
            child_env: Vec::new(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

/// Work to launch (researcher).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum JobRequest {
    /// `dexlab backtest`: one strategy with fixed parameters over a dataset.
    Backtest(BacktestJob),
    /// `dexlab evolve`: tune a strategy with the genetic optimiser, walk-forward.
    Evolve(EvolveJob),
    /// `dexlab train`: a predictive model on a feature folder, into the registry.
    Train(TrainJob),
}

/// A backtest.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BacktestJob {
    /// A dataset folder, by its path under the server's data root (see GET /api/v1/datasets).
    #[schema(max_length = 200)]
    pub dataset: String,
    /// A strategy name (`dexlab strategies list`).
    #[schema(max_length = 64)]
    pub strategy: String,
    /// Parameter overrides; the rest default.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    /// Seed of the competition draws (default 1).
    pub seed: Option<u64>,
    /// An experiment config (TOML); only its `[backtest]` table is used.
    #[schema(max_length = 32768)]
    pub config: Option<String>,
    /// A registered model (name or id) for a model-driven strategy.
    #[schema(max_length = 200)]
    pub model: Option<String>,
}

/// An evolve run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EvolveJob {
    /// A dataset folder, by its path under the server's data root.
    #[schema(max_length = 200)]
    pub dataset: String,
    #[schema(max_length = 64)]
    pub strategy: String,
    /// An experiment config (TOML: `[backtest]`, `[ga]`, `[walk_forward]`).
    #[schema(max_length = 32768)]
    pub config: Option<String>,
    pub seed: Option<u64>,
    /// A registered model (name or id) for a model-driven strategy.
    #[schema(max_length = 200)]
    pub model: Option<String>,
    #[schema(minimum = 1, maximum = 100000)]
    pub population: Option<u32>,
    #[schema(minimum = 1, maximum = 100000)]
    pub generations: Option<u32>,
    #[schema(minimum = 1, maximum = 100)]
    pub folds: Option<u32>,
    /// The experiment's name (default: `STRATEGY-jobID`).
    #[schema(max_length = 64)]
    pub name: Option<String>,
}

/// A training run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrainJob {
    /// A feature folder (`dexlab features build`), by its path under the server's data root.
    #[schema(max_length = 200)]
    pub features: String,
    /// `linear`, `mlp`, `gru` or `transformer`.
    #[schema(max_length = 16)]
    pub model: String,
    /// `regression` or `classification`.
    #[schema(max_length = 16)]
    pub task: String,
    /// Label column (default: the task's first).
    #[schema(max_length = 64)]
    pub target: Option<String>,
    pub seed: Option<u64>,
    #[schema(minimum = 1, maximum = 100000)]
    pub epochs: Option<u32>,
    /// Hyperparameters (TOML).
    #[schema(max_length = 32768)]
    pub config: Option<String>,
    /// The name in the model registry (default: `MODEL-TASK-jobID`).
    #[schema(max_length = 64)]
    pub name: Option<String>,
}

/// The fields each kind takes (besides `kind`). Checked here rather than by serde's
/// `deny_unknown_fields`, which would make the OpenAPI description of the tagged union
/// unsatisfiable (each variant's schema would forbid `kind`).
const BACKTEST_FIELDS: &[&str] = &["dataset", "strategy", "params", "seed", "config", "model"];
const EVOLVE_FIELDS: &[&str] = &[
    "dataset",
    "strategy",
    "config",
    "seed",
    "model",
    "population",
    "generations",
    "folds",
    "name",
];
const TRAIN_FIELDS: &[&str] = &[
    "features", "model", "task", "target", "seed", "epochs", "config", "name",
];

const MODEL_KINDS: [&str; 4] = ["linear", "mlp", "gru", "transformer"];
const TASKS: [&str; 2] = ["regression", "classification"];

impl JobRequest {
    /// Reads a request: `kind` must be one of the three, and a field its kind does not take is
    /// refused by name (with those it takes).
    pub fn from_json(v: Value) -> Result<JobRequest, ApiError> {
        let obj = v
            .as_object()
            .ok_or_else(|| ApiError::bad_request("a job request is a JSON object"))?;
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let fields = match kind.as_str() {
            "backtest" => BACKTEST_FIELDS,
            "evolve" => EVOLVE_FIELDS,
            "train" => TRAIN_FIELDS,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "kind must be backtest, evolve or train, got {}",
                    obj.get("kind")
                        .map_or("nothing".to_owned(), Value::to_string)
                )));
            }
        };
        if let Some(unknown) = obj
            .keys()
            .find(|k| *k != "kind" && !fields.contains(&k.as_str()))
        {
            return Err(ApiError::bad_request(format!(
                "a {kind} job takes no field {unknown:?}; it takes {}",
                fields.join(", ")
            )));
        }
        serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("{kind} job: {e}")))
    }

    pub fn kind(&self) -> JobKind {
        match self {
            JobRequest::Backtest(_) => JobKind::Backtest,
            JobRequest::Evolve(_) => JobKind::Evolve,
            JobRequest::Train(_) => JobKind::Train,
        }
    }
}

/// A name the command gets as a value: letters, digits, `.`, `_`, `-`, not leading with `.`
/// or `-`.
fn check_name(field: &str, v: &str, max: usize) -> Result<(), ApiError> {
    let ok = !v.is_empty()
        && v.len() <= max
        && !v.starts_with(['.', '-'])
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{field} must be 1 to {max} letters, digits, '.', '_' or '-', not starting with '.' \
             or '-'; got {v:?}"
        )))
    }
}

fn check_range(field: &str, v: Option<u32>, max: u32) -> Result<(), ApiError> {
    match v {
        Some(n) if n == 0 || n > max => Err(ApiError::bad_request(format!(
            "{field} must be 1 to {max}, got {n}"
        ))),
        _ => Ok(()),
    }
}

fn check_config(v: Option<&str>) -> Result<(), ApiError> {
    let Some(text) = v else { return Ok(()) };
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ApiError::bad_request(format!(
            "config is {} bytes; at most {MAX_CONFIG_BYTES}",
            text.len()
        )));
    }
    toml::from_str::<toml::Table>(text)
        .map(|_| ())
        .map_err(|e| ApiError::bad_request(format!("config is not TOML: {}", e.message())))
}

fn check_strategy(
    name: &str,
    params: Option<&Map<String, Value>>,
    model: Option<&String>,
) -> Result<(), ApiError> {
    let known = dexlab_strategy::registry::list();
    if !known.iter().any(|s| s.name == name) {
        let names: Vec<&str> = known.iter().map(|s| s.name).collect();
        return Err(ApiError::bad_request(format!(
            "strategy must be one of {}, got {name:?}",
            names.join(", ")
        )));
    }
    if dexlab_strategy::registry::needs_model(name) && model.is_none() {
        return Err(ApiError::bad_request(format!(
            "strategy {name} reads a model: give `model` (a registered model's name or id)"
        )));
    }
    if let Some(p) = params {
        dexlab_strategy::registry::parse_params(name, &Value::Object(p.clone()))
            .map_err(|e| ApiError::bad_request(format!("params: {e}")))?;
    }
    Ok(())
}

impl JobsConfig {
    /// The folder `name` names under the data root, which must hold `marker`: a relative path
    /// of plain components that stays under the root once links are resolved.
    fn resolve(&self, field: &str, name: &str, marker: &str) -> Result<PathBuf, ApiError> {
        let bad = |why: &str| ApiError::bad_request(format!("{field} {name:?}: {why}"));
        if name.is_empty() || name.len() > 200 {
            return Err(bad(
                "give a folder under the data root (1 to 200 characters)",
            ));
        }
        let rel = Path::new(name);
        let parts: Vec<_> = rel.components().collect();
        if parts.len() > MAX_DEPTH
            || !parts.iter().all(|c| {
                matches!(c, Component::Normal(s)
                    if s.to_str().is_some_and(|s| check_name(field, s, 100).is_ok()))
            })
        {
            return Err(bad(
                "a path under the data root, of names made of letters, digits, '.', '_' and '-'",
            ));
        }
        let path = std::fs::canonicalize(self.data_root.join(rel))
            .map_err(|_| bad("there is no such folder under the data root"))?;
        if !path.starts_with(&self.data_root) || path.starts_with(&self.work_dir) {
            return Err(bad("it leads outside the data root"));
        }
        if !path.join(marker).is_file() {
            return Err(bad(&format!("it has no {marker}")));
        }
        Ok(path)
    }

    /// Datasets (folders with `dataset.json`) and feature folders (`manifest.json` and
    /// `features.parquet`) under the data root, by their relative paths, sorted.
    pub fn inputs(&self) -> (Vec<String>, Vec<String>) {
        let (mut datasets, mut features) = (Vec::new(), Vec::new());
        let mut stack = vec![(self.data_root.clone(), 0usize)];
        while let Some((dir, depth)) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                let name = e.file_name();
                let hidden = name.to_str().is_none_or(|n| n.starts_with('.'));
                if hidden
                    || !e.file_type().is_ok_and(|t| t.is_dir())
                    || path.starts_with(&self.work_dir)
                {
                    continue;
                }
                let rel = path
                    .strip_prefix(&self.data_root)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if path.join("dataset.json").is_file() {
                    datasets.push(rel);
                } else if path.join("manifest.json").is_file()
                    && path.join("features.parquet").is_file()
                {
                    features.push(rel);
                } else if depth + 1 < MAX_DEPTH && datasets.len() + features.len() < 1000 {
                    stack.push((path, depth + 1));
                }
            }
        }
        datasets.sort();
        features.sort();
        (datasets, features)
    }
}

/// Checks a request and returns the spec to queue: the request as given, plus `resolved`
/// (absolute paths of its inputs, the model's directory).
pub async fn check(cfg: &JobsConfig, store: &Store, r: &JobRequest) -> Result<Value, ApiError> {
    let model_dir = |model: Option<String>| async move {
        let Some(m) = model else {
            return Ok::<_, ApiError>(None);
        };
        let row = store
            .model_by_name_or_id(&m)
            .await?
            .ok_or_else(|| ApiError::bad_request(format!("model {m:?} is not in the registry")))?;
        Ok(Some(row.model.dir))
    };
    let resolved = match r {
        JobRequest::Backtest(b) => {
            check_strategy(&b.strategy, Some(&b.params), b.model.as_ref())?;
            check_config(b.config.as_deref())?;
            let data = cfg.resolve("dataset", &b.dataset, "dataset.json")?;
            json!({ "data": data, "model_dir": model_dir(b.model.clone()).await? })
        }
        JobRequest::Evolve(e) => {
            check_strategy(&e.strategy, None, e.model.as_ref())?;
            check_config(e.config.as_deref())?;
            check_range("population", e.population, 100_000)?;
            check_range("generations", e.generations, 100_000)?;
            check_range("folds", e.folds, 100)?;
            if let Some(n) = &e.name {
                check_name("name", n, 64)?;
            }
            let data = cfg.resolve("dataset", &e.dataset, "dataset.json")?;
            json!({ "data": data, "model_dir": model_dir(e.model.clone()).await? })
        }
        JobRequest::Train(t) => {
            if !MODEL_KINDS.contains(&t.model.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "model must be one of {}, got {:?}",
                    MODEL_KINDS.join(", "),
                    t.model
                )));
            }
            if !TASKS.contains(&t.task.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "task must be one of {}, got {:?}",
                    TASKS.join(", "),
                    t.task
                )));
            }
            if let Some(target) = &t.target {
                check_name("target", target, 64)?;
            }
            if let Some(n) = &t.name {
                check_name("name", n, 64)?;
            }
            check_range("epochs", t.epochs, 100_000)?;
            check_config(t.config.as_deref())?;
            let data = cfg.resolve("features", &t.features, "manifest.json")?;
            json!({ "data": data })
        }
    };
    let mut spec = serde_json::to_value(r).map_err(|e| ApiError::internal("job spec", &e))?;
    spec["resolved"] = resolved;
    let mut tag = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut tag);
    spec["folder"] = Value::String(format!("job-{}", hex::encode(tag)));
    Ok(spec)
}

/// The command line of a queued job: arguments as `--flag=value`, paths absolute.
pub fn args(job: &JobRow, dir: &Path) -> Result<Vec<String>, String> {
    let mut spec = job.spec.clone();
    let resolved = spec
        .as_object_mut()
        .and_then(|o| {
            o.remove("folder");
            o.remove("resolved")
        })
        .ok_or("the spec has no resolved inputs")?;
    let req: JobRequest =
        serde_json::from_value(spec).map_err(|e| format!("the spec is not a job request: {e}"))?;
    let data = resolved["data"]
        .as_str()
        .ok_or("the spec has no data path")?
        .to_owned();
    let model_dir = resolved["model_dir"].as_str().map(str::to_owned);
    let config = dir.join("config.toml");
    let mut a: Vec<String> = Vec::new();
    let opt = |a: &mut Vec<String>, flag: &str, v: Option<String>| {
        if let Some(v) = v {
            a.push(format!("--{flag}={v}"));
        }
    };
    match &req {
        JobRequest::Backtest(b) => {
            a.push("backtest".into());
            a.push(format!("--data={data}"));
            a.push(format!("--strategy={}", b.strategy));
            a.push(format!("--params={}", Value::Object(b.params.clone())));
            a.push(format!("--seed={}", b.seed.unwrap_or(1)));
            opt(&mut a, "model", model_dir);
            a.push("--json".into());
        }
        JobRequest::Evolve(e) => {
            a.push("evolve".into());
            a.push(format!("--data={data}"));
            a.push(format!("--strategy={}", e.strategy));
            a.push(format!("--seed={}", e.seed.unwrap_or(1)));
            opt(&mut a, "model", model_dir);
            opt(&mut a, "population", e.population.map(|v| v.to_string()));
            opt(&mut a, "generations", e.generations.map(|v| v.to_string()));
            opt(&mut a, "folds", e.folds.map(|v| v.to_string()));
            let name = e
                .name
                .clone()
                .unwrap_or_else(|| format!("{}-job{}", e.strategy, job.id));
            a.push(format!("--name={name}"));
            a.push(format!("--out={}", dir.join("out").display()));
            a.push("--quiet".into());
            a.push("--json".into());
        }
        JobRequest::Train(t) => {
            a.push("train".into());
            a.push(format!("--features={data}"));
            a.push(format!("--model={}", t.model));
            a.push(format!("--task={}", t.task));
            opt(&mut a, "target", t.target.clone());
            a.push(format!("--seed={}", t.seed.unwrap_or(1)));
            opt(&mut a, "epochs", t.epochs.map(|v| v.to_string()));
            let name = t
                .name
                .clone()
                .unwrap_or_else(|| format!("{}-{}-job{}", t.model, t.task, job.id));
            a.push(format!("--name={name}"));
            a.push(format!("--out={}", dir.join("model").display()));
            a.push("--json".into());
        }
    }
    let cfg_text = match &req {
        JobRequest::Backtest(b) => b.config.as_ref(),
        JobRequest::Evolve(e) => e.config.as_ref(),
        JobRequest::Train(t) => t.config.as_ref(),
    };
    if cfg_text.is_some() {
        a.push(format!("--config={}", config.display()));
    }
    Ok(a)
}

fn config_text(job: &JobRow) -> Option<String> {
    job.spec["config"].as_str().map(str::to_owned)
}

/// What a finished job produced, from its stdout (`--json`) and output folder.
fn result_of(kind: JobKind, stdout: &str, dir: &Path) -> Option<Value> {
    let v: Value = serde_json::from_str(stdout).ok()?;
    Some(match kind {
        JobKind::Backtest => json!({
            "metrics": v["metrics"],
            "blocks": v["blocks"],
            "dataset_hash": v["dataset_hash"],
        }),
        JobKind::Evolve => {
            let result: Value = std::fs::read(dir.join("out").join("result.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            json!({ "experiment_id": result["experiment_id"], "summary": v })
        }
        JobKind::Train => json!({
            "model_id": v["registered"]["id"],
            "model_name": v["registered"]["name"],
            "test": v["test"]["model"],
        }),
    })
}

// ---------------------------------------------------------------------------------------------
// The runner

/// A running job's latest report.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
struct Progress {
    done: u64,
    total: u64,
    note: Option<String>,
}

/// The runner of one server.
pub struct Jobs {
    pub config: JobsConfig,
    /// This runner's name in the jobs it claims.
    pub runner: String,
    wake: Notify,
}

impl Jobs {
    /// Starts the runner (on the current tokio runtime).
    pub fn start(store: Store, config: JobsConfig) -> Arc<Jobs> {
        let mut tag = [0u8; 4];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut tag);
        let runner = format!("{}:{}", std::process::id(), hex::encode(tag));
        let dispatch = config.dispatch.clone();
        let jobs = Self::runner_only(config, runner);
        match dispatch {
            Some(q) => tokio::spawn(crate::jobs_nats::dispatch_loop(store, jobs.clone(), q)),
            None => tokio::spawn(run_loop(store, jobs.clone())),
        };
        jobs
    }

    /// A runner named `runner` that runs the jobs it is handed ([`run_claimed`]) and looks for
    /// none itself: a queue worker's.
    pub fn runner_only(config: JobsConfig, runner: String) -> Arc<Jobs> {
        Arc::new(Jobs {
            runner,
            config,
            wake: Notify::new(),
        })
    }

    /// Until a job is queued (a launch wakes it) or the poll interval passes.
    pub(crate) async fn wait(&self) {
        tokio::select! {
            () = self.wake.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }

    /// A job was queued: look now rather than at the next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A job's folder: `{work_dir}/{folder}`, the random name [`check`] gave it (unique across
    /// stores sharing a work folder; the same for every attempt, so evolve resumes there).
    pub fn dir(&self, job: &JobRow) -> PathBuf {
        let folder = job.spec["folder"]
            .as_str()
            .filter(|f| check_name("folder", f, 64).is_ok())
            .map_or_else(|| format!("job-{}", job.id), str::to_owned);
        self.config.work_dir.join(folder)
    }

    /// The last lines the job wrote on stderr (not its progress reports).
    pub fn log_tail(&self, job: &JobRow) -> Vec<String> {
        let text = std::fs::read(self.dir(job).join("stderr.log")).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..]
            .iter()
            .map(|l| (*l).to_owned())
            .collect()
    }
}

/// Requeues the running jobs whose runner stopped beating (or fails them after
/// [`MAX_ATTEMPTS`] tries).
pub(crate) async fn requeue_stale(store: &Store, jobs: &Jobs) {
    let now = crate::now();
    match store
        .requeue_stale_jobs(now - jobs.config.stale_secs.max(3), MAX_ATTEMPTS, now)
        .await
    {
        Ok((requeued, failed)) => {
            if !requeued.is_empty() || !failed.is_empty() {
                tracing::warn!(
                    ?requeued,
                    ?failed,
                    "jobs whose runner stopped: requeued, or failed after {MAX_ATTEMPTS} tries"
                );
            }
        }
        Err(e) => tracing::warn!("jobs: checking for stale jobs: {e}"),
    }
}

async fn run_loop(store: Store, jobs: Arc<Jobs>) {
    let slots = Arc::new(Semaphore::new(jobs.config.slots));
    loop {
        requeue_stale(&store, &jobs).await;
        while let Ok(permit) = slots.clone().try_acquire_owned() {
            match store.claim_job(&jobs.runner, crate::now()).await {
                Ok(Some(job)) => {
                    tracing::info!(job = job.id, kind = job.kind.as_str(), "job started");
                    let (store, jobs) = (store.clone(), jobs.clone());
                    tokio::spawn(async move {
                        run_claimed(store, jobs, job).await;
                        drop(permit);
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("jobs: claiming a job: {e}");
                    break;
                }
            }
        }
        jobs.wait().await;
    }
}

/// Runs a job this runner has claimed to its end and records the end; `None` when the job was
/// taken from this runner meanwhile (requeued as stale) or its end could not be recorded.
pub async fn run_claimed(store: Store, jobs: Arc<Jobs>, job: JobRow) -> Option<JobRow> {
    let id = job.id;
    let end = match execute(&store, &jobs, &job).await {
        Ok(end) => end,
        Err(Lost) => {
            tracing::warn!(job = id, "job taken from this runner (stale); stopped here");
            return None;
        }
    };
    let row = match store.finish_job(id, &jobs.runner, &end).await {
        Ok(row) => {
            tracing::info!(job = id, state = row.state.as_str(), "job ended");
            Some(row)
        }
        Err(e) => {
            tracing::warn!(job = id, "recording the end of the job: {e}");
            None
        }
    };
    jobs.wake();
    row
}

/// The job is no longer this runner's.
struct Lost;

pub(crate) fn failed_end(error: String) -> JobEnd {
    failed(error)
}

fn failed(error: String) -> JobEnd {
    JobEnd {
        state: JobState::Failed,
        exit_code: None,
        error: Some(error),
        result: None,
        progress: (0, 0, None),
        at: crate::now(),
    }
}

fn signal(pid: Option<u32>, sig: rustix::process::Signal) {
    let pid = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        // The process may have ended meanwhile: nothing to do then.
        let _ = rustix::process::kill_process(pid, sig);
    }
}

async fn execute(store: &Store, jobs: &Jobs, job: &JobRow) -> Result<JobEnd, Lost> {
    let dir = jobs.dir(job);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return Ok(failed(format!("making the job folder: {e}")));
    }
    if let Some(text) = config_text(job)
        && let Err(e) = std::fs::write(dir.join("config.toml"), text)
    {
        return Ok(failed(format!("writing the job's config: {e}")));
    }
    let args = match args(job, &dir) {
        Ok(a) => a,
        Err(e) => return Ok(failed(e)),
    };
    // stdout is this attempt's answer; stderr.log keeps every attempt's lines.
    let (stdout, stderr_log) = match (
        std::fs::File::create(dir.join("stdout.json")),
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("stderr.log")),
    ) {
        (Ok(o), Ok(e)) => (o, e),
        (Err(e), _) | (_, Err(e)) => return Ok(failed(format!("opening the job's logs: {e}"))),
    };
    {
        use std::io::Write;
        let mut header = &stderr_log;
        let _ = writeln!(
            header,
            "--- attempt {} by runner {} at {} ---",
            job.attempts,
            jobs.runner,
            crate::now()
        );
    }
    let mut child = match tokio::process::Command::new(&jobs.config.program)
        .args(&args)
        .env("DATABASE_URL", store.connection_url())
        .env("DEXLAB_JOB", "1")
        .envs(jobs.config.child_env.iter().map(|(k, v)| (k, v)))
        // The job's own log, at the command's default level and without colour codes, not
        // the server's settings.
        .env_remove("DEXLAB_LOG")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::piped())
        // Not killed when this runner goes away (a server stopping): the child sees its stdin
        // close and stops itself as on SIGTERM, so an evolve run is marked interrupted.
        .kill_on_drop(false)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            return Ok(failed(format!(
                "starting {}: {e}",
                jobs.config.program.display()
            )));
        }
    };
    let pid = child.id();
    // Held open while the job runs: the child ends itself when it closes.
    let stdin = child.stdin.take();
    let progress = Arc::new(Mutex::new(Progress::default()));
    let tail = Arc::new(Mutex::new(VecDeque::<String>::new()));
    let reader = child.stderr.take().map(|err| {
        let (progress, tail) = (progress.clone(), tail.clone());
        tokio::spawn(async move {
            let mut log = tokio::fs::File::from_std(stderr_log);
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(p) = line
                    .strip_prefix(PROGRESS_PREFIX)
                    .and_then(|j| serde_json::from_str::<Progress>(j).ok())
                {
                    *progress.lock().expect("progress lock") = p;
                    continue;
                }
                let _ = log.write_all(format!("{line}\n").as_bytes()).await;
                let mut t = tail.lock().expect("tail lock");
                if t.len() == TAIL_LINES {
                    t.pop_front();
                }
                t.push_back(line);
            }
            let _ = log.flush().await;
        })
    });
    let mut beat = tokio::time::interval(HEARTBEAT);
    let mut cancelled_at: Option<tokio::time::Instant> = None;
    let status = loop {
        tokio::select! {
            s = child.wait() => break s,
            _ = beat.tick() => {
                let p = progress.lock().expect("progress lock").clone();
                match store
                    .job_heartbeat(job.id, &jobs.runner, crate::now(), (p.done, p.total, p.note.as_deref()))
                    .await
                {
                    Ok(true) if cancelled_at.is_none() => {
                        tracing::info!(job = job.id, "job cancelled: SIGTERM");
                        signal(pid, rustix::process::Signal::TERM);
                        cancelled_at = Some(tokio::time::Instant::now());
                    }
                    Ok(_) => {}
                    Err(StoreError::NotFound { .. }) => {
                        let _ = child.kill().await;
                        return Err(Lost);
                    }
                    Err(e) => tracing::warn!(job = job.id, "job heartbeat: {e}"),
                }
                if cancelled_at.is_some_and(|t| t.elapsed() > GRACE) {
                    let _ = child.start_kill();
                }
            }
        }
    };
    drop(stdin);
    if let Some(r) = reader {
        let _ = r.await;
    }
    let at = crate::now();
    let last = progress.lock().expect("progress lock").clone();
    let last = (last.done, last.total, last.note);
    let status = match status {
        Ok(s) => s,
        Err(e) => return Ok(failed(format!("waiting for the job's process: {e}"))),
    };
    if cancelled_at.is_some() {
        return Ok(JobEnd {
            state: JobState::Cancelled,
            exit_code: status.code().map(i64::from),
            error: None,
            result: None,
            progress: last,
            at,
        });
    }
    if status.success() {
        let out = std::fs::read(dir.join("stdout.json")).unwrap_or_default();
        return Ok(JobEnd {
            state: JobState::Succeeded,
            exit_code: Some(0),
            error: None,
            result: result_of(job.kind, &String::from_utf8_lossy(&out), &dir),
            progress: last,
            at,
        });
    }
    let lines: Vec<String> = tail.lock().expect("tail lock").iter().cloned().collect();
    let tail_lines: Vec<&String> = lines.iter().rev().take(8).collect();
    let mut error = tail_lines
        .into_iter()
        .rev()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("\n");
    if error.trim().is_empty() {
        error = match status.code() {
            Some(c) => format!("exited with status {c}"),
            None => "killed by a signal".to_owned(),
        };
    }
    Ok(JobEnd {
        state: JobState::Failed,
        exit_code: status.code().map(i64::from),
        error: Some(error.chars().take(4000).collect()),
        result: None,
        progress: last,
        at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(root: &Path) -> JobsConfig {
        std::fs::create_dir_all(root.join("data/base")).unwrap();
        std::fs::write(root.join("data/base/dataset.json"), "{}").unwrap();
        std::fs::create_dir_all(root.join("feat")).unwrap();
        std::fs::write(root.join("feat/manifest.json"), "{}").unwrap();
        std::fs::write(root.join("feat/features.parquet"), "").unwrap();
        std::fs::create_dir_all(root.join(".hidden")).unwrap();
        std::fs::write(root.join(".hidden/dataset.json"), "{}").unwrap();
        JobsConfig::new(
            std::env::current_exe().unwrap(),
            root,
            &root.join("jobs"),
            1,
        )
        .unwrap()
    }

    #[test]
    fn inputs_are_found_by_name_and_nothing_escapes_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("dataset.json"), "{}").unwrap();
        let c = cfg(dir.path());
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        assert_eq!(
            c.inputs(),
            (vec!["data/base".to_owned()], vec!["feat".to_owned()])
        );
        assert!(c.resolve("dataset", "data/base", "dataset.json").is_ok());
        for bad in [
            "../x",
            "/etc",
            "data/../data/base",
            "",
            ".hidden",
            "-x",
            "link",
            "feat",
            "data",
            "jobs",
        ] {
            let e = c.resolve("dataset", bad, "dataset.json").unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn requests_become_flag_value_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let req: JobRequest = serde_json::from_value(json!({
            "kind": "evolve", "dataset": "data/base", "strategy": "cross-venue-arb",
            "generations": 3, "config": "[ga]\npopulation = 8\n"
        }))
        .unwrap();
        let mut spec = serde_json::to_value(&req).unwrap();
        spec["resolved"] = json!({ "data": "/d/base", "model_dir": null });
        let row = JobRow {
            id: 7,
            kind: JobKind::Evolve,
            spec,
            state: JobState::Running,
            created_by: "r".into(),
            created_by_id: None,
            created_at: 0,
            started_at: None,
            finished_at: None,
            heartbeat_at: None,
            runner: None,
            attempts: 1,
            cancel_requested: false,
            progress_done: 0,
            progress_total: 0,
            progress_note: None,
            exit_code: None,
            error: None,
            result: None,
        };
        let a = args(&row, dir.path()).unwrap();
        let out = dir.path().join("out");
        let config = dir.path().join("config.toml");
        assert_eq!(
            a,
            [
                "evolve".to_owned(),
                "--data=/d/base".into(),
                "--strategy=cross-venue-arb".into(),
                "--seed=1".into(),
                "--generations=3".into(),
                "--name=cross-venue-arb-job7".into(),
                format!("--out={}", out.display()),
                "--quiet".into(),
                "--json".into(),
                format!("--config={}", config.display()),
            ]
        );
        assert_eq!(config_text(&row).as_deref(), Some("[ga]\npopulation = 8\n"));
    }

    #[test]
    fn unknown_fields_and_kinds_are_refused() {
        for (bad, says) in [
            (
                json!({ "kind": "backtest", "dataset": "d", "strategy": "s", "extra": 1 }),
                "no field \"extra\"",
            ),
            (
                json!({ "kind": "train", "features": "f", "model": "mlp", "task": "regression", "strategy": "s" }),
                "no field \"strategy\"",
            ),
            (json!({ "kind": "shell", "cmd": "rm" }), "kind must be"),
            (json!({ "dataset": "d", "strategy": "s" }), "got nothing"),
            (
                json!({ "kind": "evolve", "dataset": "d", "strategy": "s", "folds": -1 }),
                "evolve job: invalid value",
            ),
            (json!(["backtest"]), "JSON object"),
        ] {
            let e = JobRequest::from_json(bad.clone()).unwrap_err();
            assert!(e.message.contains(says), "{bad}: {}", e.message);
        }
    }

    /// The field lists are every field of each kind's struct.
    #[test]
    fn the_field_lists_match_the_requests() {
        let full = [
            (
                json!({ "kind": "backtest", "dataset": "d", "strategy": "s", "params": {}, "seed": 1,
                     "config": "", "model": "m" }),
                BACKTEST_FIELDS,
            ),
            (
                json!({ "kind": "evolve", "dataset": "d", "strategy": "s", "config": "", "seed": 1,
                     "model": "m", "population": 1, "generations": 1, "folds": 1, "name": "n" }),
                EVOLVE_FIELDS,
            ),
            (
                json!({ "kind": "train", "features": "f", "model": "mlp", "task": "t", "target": "x",
                     "seed": 1, "epochs": 1, "config": "", "name": "n" }),
                TRAIN_FIELDS,
            ),
        ];
        for (v, fields) in full {
            let r = JobRequest::from_json(v.clone()).unwrap();
            let back = serde_json::to_value(&r).unwrap();
            let mut keys: Vec<&str> = back
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .filter(|k| *k != "kind")
                .collect();
            let mut want = fields.to_vec();
            keys.sort_unstable();
            want.sort_unstable();
            assert_eq!(keys, want);
            assert_eq!(back, v);
        }
    }
}
