//! ML commands: train a predictive model on a features folder into a model directory and register
//! it in the store; list, show and compare the registered models.
//!
//! The directory is the model; the registry row (`dexlab_store::NewModel`) is read from the
//! directory's files right after training, plus its content hash. A registered name or directory
//! is never overwritten with other content: when the name is already registered, the new training
//! goes to a hidden sibling first and replaces the directory only if it reproduces the registered
//! model byte for byte (a rerun of the same deterministic training).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use dexlab_models::artifact::Artifact;
use dexlab_models::{
    Backend, Metrics, ModelKind, Predictor, SchemaDiff, Task, TestReport, TrainOptions,
};
use dexlab_store::{ModelRow, NewModel, Store};
use serde::Serialize;
use serde_json::json;

#[derive(Args)]
pub struct TrainArgs {
    /// A `dexlab features build` output folder.
    #[arg(long)]
    features: PathBuf,
    /// linear | mlp | gru | transformer
    #[arg(long)]
    model: String,
    /// regression | classification
    #[arg(long)]
    task: String,
    /// Label column (default: the first `label_…` column of the task's kind).
    #[arg(long)]
    target: Option<String>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Maximum epochs (early stopping may end sooner).
    #[arg(long, default_value_t = 50)]
    epochs: usize,
    /// TOML of hyperparameters (hidden sizes, learning rate, batch, window, patience, splits).
    #[arg(long)]
    config: Option<PathBuf>,
    /// flex (default: burn's CPU backend, bit-reproducible) | ndarray | wgpu | cuda (the last
    /// three need the `dexlab-models` cargo feature of that name).
    #[arg(long, default_value = "flex")]
    backend: String,
    /// Model directory (default: models/MODEL-TASK-seedN).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Name in the model registry (DATABASE_URL, default ./dexlab.sqlite); default: the model
    /// directory's name. Names are unique: training again under a registered name must
    /// reproduce that model exactly, or it is refused and the directory left as it was.
    #[arg(long)]
    name: Option<String>,
    /// Print the training report as JSON, with a `registered` object (id, name, dir,
    /// content_hash, store, new).
    #[arg(long)]
    json: bool,
}

/// `--json` of `models list`.
const LIST_JSON: &str = "\
With --json: {\"models\": [...]}, newest first. Each model has every registry field (id, name, \
kind, task, target, dir, content_hash, features, window, seed, backend, dataset_hash, git_commit, \
config, dataset, training, metrics, train_seconds, created_at) and `headline`: {metric, \
model, best_baseline: {name, value}} with the task's test loss (mse or log_loss), or null for \
models without predictive test metrics.";

/// `--json` of `models show`.
const SHOW_JSON: &str = "\
With --json: {\"model\": {...}, \"directory\": {...}}. `model` has every registry field, as in \
`models list --json` (metrics holds the test split and the test metrics of the model and of each \
baseline). `directory` is {path, exists, loads, content_hash, content_matches, problems}: \
content_hash is the directory's hash now (null when it cannot be read), problems lists in words \
everything that differs from the registry or fails (empty when the directory is intact).";

/// `--json` of `models compare`.
const COMPARE_JSON: &str = "\
With --json: {\"comparable\": bool, \"problems\": [...], \"metrics\": [...], \"models\": [...]}. \
`problems` says in words why the models are not comparable (different tasks, targets, datasets \
or test splits); `metrics` names the metrics compared, in order (regression: mse, mae, \
directional_accuracy; classification: auc, accuracy, log_loss); each of `models` is {id, name, \
kind, task, target, dataset_hash, window, test_split: {rows, first_block, last_block}, metrics: \
{NAME: value}, baselines: [{name, metrics: {NAME: value}}], best_baseline: {name, metric, value}} \
(null values where a metric is undefined).";

#[derive(Subcommand)]
pub enum ModelsCmd {
    /// Registered models, newest first, with the model's test loss next to its best baseline's.
    #[command(after_help = LIST_JSON)]
    List {
        /// Print JSON instead (top-level keys below).
        #[arg(long)]
        json: bool,
    },
    /// One model: provenance, features, test metrics of the model and of each baseline, and
    /// whether its directory still exists, loads and holds what was registered.
    #[command(after_help = SHOW_JSON)]
    Show {
        /// Model name or id.
        #[arg(value_name = "NAME|ID")]
        model: String,
        /// Print JSON instead (top-level keys below).
        #[arg(long)]
        json: bool,
    },
    /// Test metrics of two or more models side by side; says so when they were evaluated on
    /// different tasks, targets, datasets or test splits and are not comparable.
    #[command(after_help = COMPARE_JSON)]
    Compare {
        /// Model names or ids.
        #[arg(required = true, num_args = 2.., value_name = "NAME|ID")]
        models: Vec<String>,
        /// Print JSON instead (top-level keys below).
        #[arg(long)]
        json: bool,
    },
}

/// The store of `DATABASE_URL` (default `./dexlab.sqlite`), created if missing: for the
/// commands that write it (`evolve`, `train`, `rl train`).
pub(crate) fn store(rt: &tokio::runtime::Runtime) -> anyhow::Result<Store> {
    let cwd = std::env::current_dir()?;
    let url = Store::url_from_env(&cwd);
    Ok(rt.block_on(Store::connect(&url))?)
}

/// The same store for commands that only read it (`experiments`, `models`, `report`): one that
/// does not exist is an error, and nothing is created.
pub(crate) fn store_existing(rt: &tokio::runtime::Runtime) -> anyhow::Result<Store> {
    let cwd = std::env::current_dir()?;
    let url = Store::url_from_env(&cwd);
    Ok(rt.block_on(Store::open_existing(&url))?)
}

pub fn train_cmd(a: TrainArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let model: ModelKind = a.model.parse()?;
    let task: Task = a.task.parse()?;
    let backend: Backend = a.backend.parse()?;
    dexlab_models::training::check_epochs(a.epochs).context("--epochs")?;
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from("models").join(format!(
            "{}-{}-seed{}",
            model.as_str(),
            task.as_str(),
            a.seed
        ))
    });
    let name = match &a.name {
        Some(n) => n.clone(),
        None => out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("--out {} does not name a directory", out.display()))?,
    };
    dexlab_store::validate_model_name(&name).with_context(|| {
        if a.name.is_some() {
            "--name".to_owned()
        } else {
            format!("the name taken from --out {}; pass --name", out.display())
        }
    })?;
    // One training per model directory at a time.
    let _lock = dexlab_data::outdir::OutputLock::acquire(&out)?;
    let dir = std::path::absolute(&out).with_context(|| format!("resolving {}", out.display()))?;
    let dir_text = dir.to_string_lossy().into_owned();

    // Before training, so that a clash costs nothing and overwrites nothing.
    let store = store(rt)?;
    let registered = rt.block_on(store.list_models())?;
    let held = registered.iter().find(|m| m.model.name == name);
    match held {
        Some(h) if h.model.dir != dir_text => bail!(
            "model name `{name}` is already registered (model {}) for directory {}: choose another --name, \
             or --out {} to reproduce that model",
            h.id,
            h.model.dir,
            h.model.dir
        ),
        None => {
            if let Some(other) = registered.iter().find(|m| m.model.dir == dir_text) {
                bail!(
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
    let mut opts = TrainOptions::new(&a.features, &train_dir, model, task);
    opts.target = a.target.clone();
    opts.seed = a.seed;
    opts.epochs = a.epochs;
    opts.config = a.config.clone();
    opts.backend = backend;
    let mut r = dexlab_models::train(&opts)?;
    let content_hash = dexlab_store::content_hash(&train_dir)?;
    if let (Some(h), Some(c)) = (held, candidate) {
        if h.model.content_hash != content_hash {
            drop(c);
            bail!(
                "model `{name}` is already registered (model {}, directory {}) with other content: \
                 this training gave {}, the registry holds {}; the directory was left as it was. \
                 Train under another --name and --out to keep both",
                h.id,
                h.model.dir,
                short(&content_hash),
                short(&h.model.content_hash)
            );
        }
        // The same bytes: put them in place (this restores a deleted or edited directory).
        c.replace(&dir)?;
        r.model_dir = out.clone();
    }
    let artifact = Artifact::read(&dir)?;
    let new = registry_row(&name, &dir_text, content_hash, &artifact, r.train_seconds)?;
    let id = rt.block_on(store.register_model(&new)).with_context(|| {
        format!(
            "registering model `{name}` in the {} store",
            store.backend()
        )
    })?;
    let fresh = held.is_none();
    // Views of the metrics and predictions; the registry's content hash leaves them out.
    if let Err(e) = dexlab_report::write_model_plots(&dir) {
        tracing::warn!("model plots not written: {e}");
    }

    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v["registered"] = json!({
            "id": id,
            "name": name,
            "dir": dir_text,
            "content_hash": new.content_hash,
            "store": store.backend(),
            "new": fresh,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} {} on `{}`: {} features, window {}, rows train/valid/test {}/{}/{} ({} dropped); {} epochs (best {}{}), {:.0} samples/s",
        model.as_str(),
        task.as_str(),
        r.target,
        r.features,
        r.window,
        r.rows.train,
        r.rows.valid,
        r.rows.test,
        r.rows.dropped(),
        r.epochs_run,
        r.best_epoch,
        if r.stopped_early {
            ", stopped early"
        } else {
            ""
        },
        r.train_samples_per_sec
    );
    println!(
        "test split, blocks {}..{} ({} rows), next to the baselines:",
        r.test.first_block, r.test.last_block, r.test.rows
    );
    println!(
        "  {:<22} {}",
        "model",
        serde_json::to_string(&r.test.model)?
    );
    for b in &r.test.baselines {
        println!("  {:<22} {}", b.name, serde_json::to_string(&b.metrics)?);
    }
    println!("model directory: {}", r.model_dir.display());
    if fresh {
        println!(
            "registered as model {id} `{name}` in the {} store",
            store.backend()
        );
    } else {
        println!(
            "already registered as model {id} `{name}` in the {} store, with the same content",
            store.backend()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The registry row of a model directory, from its files.
fn registry_row(
    name: &str,
    dir: &str,
    content_hash: String,
    art: &Artifact,
    train_seconds: f64,
) -> anyhow::Result<NewModel> {
    let m = &art.metrics;
    Ok(NewModel {
        name: name.to_owned(),
        kind: art.config.model_kind.as_str().to_owned(),
        task: art.schema.task.as_str().to_owned(),
        target: art.schema.target.clone(),
        dir: dir.to_owned(),
        content_hash,
        features: art.schema.features.clone(),
        window: u32::try_from(art.schema.window).context("window")?,
        seed: art.config.seed,
        backend: art.config.backend.as_str().to_owned(),
        dataset_hash: art.dataset.dataset_hash.clone(),
        git_commit: art.config.git_commit.clone(),
        config: serde_json::to_value(&art.config)?,
        dataset: serde_json::to_value(&art.dataset)?,
        training: json!({
            "epochs_run": m.epochs_run,
            "best_epoch": m.best_epoch,
            "best_valid_loss": m.best_valid_loss,
            "stopped_early": m.stopped_early,
        }),
        metrics: serde_json::to_value(&m.test)?,
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
    fn beside(dir: &Path) -> anyhow::Result<Self> {
        let name = dir.file_name().context("the model directory has no name")?;
        let parent = dir.parent().unwrap_or(Path::new("."));
        let path = parent.join(format!(
            ".{}.candidate-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing {}", path.display()))?;
        }
        Ok(Self {
            path,
            placed: false,
        })
    }

    fn replace(mut self, dir: &Path) -> anyhow::Result<()> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("replacing {}", dir.display()))?;
        }
        std::fs::rename(&self.path, dir)
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

pub fn models_cmd(c: ModelsCmd, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let store = store_existing(rt)?;
    match c {
        ModelsCmd::List { json } => list(&store, rt, json),
        ModelsCmd::Show { model, json } => {
            let row = find(&store, rt, &model)?;
            show(&row, json)
        }
        ModelsCmd::Compare { models, json } => {
            let rows = models
                .iter()
                .map(|m| find(&store, rt, m))
                .collect::<anyhow::Result<Vec<_>>>()?;
            compare(&rows, json)
        }
    }
}

fn find(store: &Store, rt: &tokio::runtime::Runtime, name_or_id: &str) -> anyhow::Result<ModelRow> {
    rt.block_on(store.model_by_name_or_id(name_or_id))?.with_context(|| {
        format!(
            "no model `{name_or_id}` in the {} store at {}; `dexlab models list` shows the registered ones",
            store.backend(),
            store.url()
        )
    })
}

/// The test split and metrics of a predictive model (`None` for rows of other kinds).
fn test_report(row: &ModelRow) -> Option<TestReport> {
    serde_json::from_value(row.model.metrics.clone()).ok()
}

#[derive(Serialize)]
struct Headline {
    /// The task's loss: `mse` or `log_loss`; lower is better.
    metric: &'static str,
    model: f64,
    best_baseline: Option<NamedValue>,
}

#[derive(Serialize)]
struct NamedValue {
    name: String,
    value: f64,
}

fn headline(t: &TestReport) -> Headline {
    let metric = match t.model {
        Metrics::Regression(_) => "mse",
        Metrics::Classification(_) => "log_loss",
    };
    let best_baseline = t
        .baselines
        .iter()
        .map(|b| NamedValue {
            name: b.name.clone(),
            value: b.metrics.loss(),
        })
        .filter(|b| b.value.is_finite())
        .min_by(|a, b| a.value.total_cmp(&b.value));
    Headline {
        metric,
        model: t.model.loss(),
        best_baseline,
    }
}

/// An RL agent's out-of-sample net PnL and the best baseline's (higher is better).
fn agent_headline(r: &ModelRow) -> Option<(String, String)> {
    let runs = r.model.metrics.get("runs")?.as_array()?;
    let pnl = |run: &serde_json::Value| run.pointer("/metrics/net_pnl_quote")?.as_f64();
    let mine = runs
        .iter()
        .find(|x| x["kind"] == r.model.kind.as_str())
        .and_then(pnl)?;
    let best = runs
        .iter()
        .filter(|x| x["kind"] != r.model.kind.as_str())
        .filter_map(|x| Some((x["kind"].as_str()?, pnl(x)?)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    Some((
        format!("net PnL {}", num(mine)),
        format!("{} {}", best.0, num(best.1)),
    ))
}

fn list(store: &Store, rt: &tokio::runtime::Runtime, json: bool) -> anyhow::Result<ExitCode> {
    let rows = rt.block_on(store.list_models())?;
    if json {
        let models = rows
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r)?;
                v["headline"] = serde_json::to_value(test_report(r).as_ref().map(headline))?;
                Ok(v)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "models": models }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!(
            "no models in the {} store at {}; `dexlab train` registers them",
            store.backend(),
            store.url()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = vec![
        [
            "id",
            "name",
            "kind",
            "task",
            "target",
            "test loss",
            "best baseline",
            "created",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in &rows {
        let m = &r.model;
        let (loss, base) = match test_report(r).as_ref().map(headline) {
            Some(h) => (
                format!("{} {}", h.metric, num(h.model)),
                h.best_baseline
                    .map_or("-".into(), |b| format!("{} {}", b.name, num(b.value))),
            ),
            None => agent_headline(r).unwrap_or_else(|| ("-".into(), "-".into())),
        };
        table.push(vec![
            r.id.to_string(),
            m.name.clone(),
            m.kind.clone(),
            m.task.clone(),
            m.target.clone(),
            loss,
            base,
            utc(m.created_at),
        ]);
    }
    print_table(&table, &[0]);
    Ok(ExitCode::SUCCESS)
}

/// Whether a model directory still holds what the registry says.
#[derive(Serialize)]
struct DirStatus {
    path: String,
    exists: bool,
    /// The weights load (burn, CPU backend) and the model files parse.
    loads: bool,
    /// The directory's content hash now; `None` when it cannot be read.
    content_hash: Option<String>,
    content_matches: bool,
    /// Everything that differs from the registry or fails, in words; empty when intact.
    problems: Vec<String>,
}

fn check_dir(row: &ModelRow) -> DirStatus {
    let m = &row.model;
    let dir = Path::new(&m.dir);
    let mut s = DirStatus {
        path: m.dir.clone(),
        exists: dir.is_dir(),
        loads: false,
        content_hash: None,
        content_matches: false,
        problems: Vec::new(),
    };
    if !s.exists {
        s.problems.push(if dir.exists() {
            "not a directory".to_owned()
        } else {
            "the directory is missing".to_owned()
        });
        return s;
    }
    match dexlab_store::content_hash(dir) {
        Ok(h) => {
            s.content_matches = h == m.content_hash;
            if !s.content_matches {
                s.problems.push(format!(
                    "its content changed since registration (registered {}, now {})",
                    short(&m.content_hash),
                    short(&h)
                ));
            }
            s.content_hash = Some(h);
        }
        Err(e) => s.problems.push(format!("{:#}", anyhow::Error::from(e))),
    }
    if m.task == "rl" {
        // An RL agent: its networks and environment, not a predictive model's artifact.
        match dexlab_models::rl::load_agent(dir) {
            Ok(agent) if agent.kind().as_str() == m.kind => s.loads = true,
            Ok(agent) => s.problems.push(format!(
                "kind differs: registry {}, directory {}",
                m.kind,
                agent.kind()
            )),
            Err(e) => s.problems.push(format!("the agent does not load: {e}")),
        }
        return s;
    }
    let art = match Artifact::read(dir) {
        Ok(a) => a,
        Err(e) => {
            s.problems.push(format!("the model files do not read: {e}"));
            return s;
        }
    };
    if let Some(diff) = SchemaDiff::between(&m.features, &art.schema.features) {
        s.problems.push(format!(
            "schema.json's feature columns differ from the registered ones: {diff}"
        ));
    }
    let mut differs = |what: &str, registered: String, now: String| {
        if registered != now {
            s.problems.push(format!(
                "{what} differs: registry {registered}, directory {now}"
            ));
        }
    };
    differs("target", m.target.clone(), art.schema.target.clone());
    differs("task", m.task.clone(), art.schema.task.as_str().to_owned());
    differs(
        "window",
        m.window.to_string(),
        art.schema.window.to_string(),
    );
    differs(
        "kind",
        m.kind.clone(),
        art.config.model_kind.as_str().to_owned(),
    );
    let hash = |h: &Option<String>| h.clone().unwrap_or_else(|| "unknown".into());
    differs(
        "dataset hash",
        hash(&m.dataset_hash),
        hash(&art.dataset.dataset_hash),
    );
    match Predictor::load_unchecked(dir, Backend::default()) {
        Ok(_) => s.loads = true,
        Err(e) => s.problems.push(format!("the weights do not load: {e}")),
    }
    s
}

fn show(row: &ModelRow, json: bool) -> anyhow::Result<ExitCode> {
    let status = check_dir(row);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "model": row, "directory": status }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let m = &row.model;
    println!(
        "model {} `{}`: {} {} on `{}`",
        row.id, m.name, m.kind, m.task, m.target
    );
    println!("  registered   {}", utc(m.created_at));
    if status.problems.is_empty() {
        println!(
            "  directory    {} (intact: loads, same content as registered)",
            m.dir
        );
    } else {
        println!("  directory    {}", m.dir);
        for p in &status.problems {
            println!("    PROBLEM: {p}");
        }
    }
    println!("  content      sha256 {}", m.content_hash);
    println!("  features     {} (window {}):", m.features.len(), m.window);
    for line in wrap(&m.features, 90) {
        println!("               {line}");
    }
    println!(
        "  dataset      hash {}",
        m.dataset_hash.as_deref().unwrap_or("unknown")
    );
    if let Some(dir) = m.dataset.get("features_dir").and_then(|d| d.as_str()) {
        println!("               features folder {dir}");
    }
    if let Some(rows) = m.dataset.get("rows") {
        println!(
            "               rows train/valid/test {}/{}/{}, embargo {}",
            rows["train"], rows["valid"], rows["test"], m.dataset["embargo"]
        );
    }
    if let Some(t) = m.dataset.get("train_blocks") {
        let range = |v: &serde_json::Value| format!("{}..={}", v[0], v[1]);
        println!(
            "               blocks train {}, valid {}, test {}; label look-ahead {}",
            range(t),
            range(&m.dataset["valid_blocks"]),
            range(&m.dataset["test_blocks"]),
            m.dataset
                .get("lookahead_blocks")
                .map_or("not recorded".into(), |l| format!("{l} blocks"))
        );
    }
    let t = &m.training;
    if m.task == "rl" {
        println!(
            "  training     seed {}, backend {}, {} episodes (reward {} → {}), {}, git {}",
            m.seed,
            m.backend,
            t["episodes"],
            t["first_episode_reward"].as_f64().map_or("-".into(), num),
            t["last_episode_reward"].as_f64().map_or("-".into(), num),
            m.train_seconds
                .map_or("time unknown".into(), |s| format!("{s:.2} s")),
            m.git_commit
        );
    } else {
        println!(
            "  training     seed {}, backend {}, {} epochs (best {}{}), {}, git {}",
            m.seed,
            m.backend,
            t["epochs_run"],
            t["best_epoch"],
            if t["stopped_early"] == true {
                ", stopped early"
            } else {
                ""
            },
            m.train_seconds
                .map_or("time unknown".into(), |s| format!("{s:.2} s")),
            m.git_commit
        );
    }
    match test_report(row) {
        Some(r) => {
            println!(
                "  test split   blocks {}..{}, {} rows",
                r.first_block, r.last_block, r.rows
            );
            let names = metric_names(&r.model);
            let mut table: Vec<Vec<String>> = vec![
                std::iter::once(String::new())
                    .chain(names.iter().map(|n| n.to_string()))
                    .collect(),
            ];
            let mut line = |who: &str, metrics: &Metrics| {
                let values = metric_values(metrics);
                table.push(
                    std::iter::once(who.to_owned())
                        .chain(
                            names
                                .iter()
                                .map(|n| values.get(n).copied().flatten().map_or("-".into(), num)),
                        )
                        .collect(),
                );
            };
            line("model", &r.model);
            for b in &r.baselines {
                line(&format!("baseline {}", b.name), &b.metrics);
            }
            print_table_indented(&table, &(1..=names.len()).collect::<Vec<_>>(), "    ");
        }
        None => match m.metrics.get("runs").and_then(|r| r.as_array()) {
            // An RL agent: its evaluation on held-out blocks, next to the baselines.
            Some(runs) => {
                println!(
                    "  held out     blocks {} ({} blocks)",
                    m.metrics["test_blocks"], m.metrics["blocks"]
                );
                let mut table = vec![
                    ["", "net PnL", "bundles", "gas", "max drawdown"]
                        .map(String::from)
                        .to_vec(),
                ];
                for run in runs {
                    let v = |k: &str| run["metrics"][k].as_f64().map_or("-".into(), num);
                    table.push(vec![
                        run["kind"].as_str().unwrap_or("?").to_owned(),
                        v("net_pnl_quote"),
                        run["metrics"]["trades"].to_string(),
                        v("gas_spent_quote"),
                        v("max_drawdown"),
                    ]);
                }
                print_table_indented(&table, &[1, 2, 3, 4], "    ");
            }
            None => println!("  metrics      {}", m.metrics),
        },
    }
    Ok(ExitCode::SUCCESS)
}

fn metric_names(m: &Metrics) -> Vec<&'static str> {
    match m {
        Metrics::Regression(_) => vec!["mse", "mae", "directional_accuracy"],
        Metrics::Classification(_) => vec!["auc", "accuracy", "log_loss"],
    }
}

/// Each metric of [`metric_names`] (`None` where undefined, e.g. AUC on one class).
fn metric_values(m: &Metrics) -> BTreeMap<&'static str, Option<f64>> {
    match m {
        Metrics::Regression(r) => BTreeMap::from([
            ("mse", Some(r.mse)),
            ("mae", Some(r.mae)),
            ("directional_accuracy", r.directional_accuracy),
        ]),
        Metrics::Classification(c) => BTreeMap::from([
            ("auc", c.auc),
            ("accuracy", Some(c.accuracy)),
            ("log_loss", Some(c.log_loss)),
        ]),
    }
}

/// Whether a higher value of the metric is better.
fn higher_is_better(metric: &str) -> bool {
    matches!(metric, "directional_accuracy" | "auc" | "accuracy")
}

#[derive(Serialize)]
struct TestSplit {
    rows: usize,
    first_block: i64,
    last_block: i64,
}

#[derive(Serialize)]
struct BaselineMetrics {
    name: String,
    metrics: BTreeMap<&'static str, Option<f64>>,
}

#[derive(Serialize)]
struct BestBaseline {
    name: String,
    /// The task's loss (`mse` or `log_loss`).
    metric: &'static str,
    value: f64,
}

#[derive(Serialize)]
struct Compared {
    id: i64,
    name: String,
    kind: String,
    task: String,
    target: String,
    dataset_hash: Option<String>,
    window: u32,
    test_split: Option<TestSplit>,
    metrics: BTreeMap<&'static str, Option<f64>>,
    baselines: Vec<BaselineMetrics>,
    best_baseline: Option<BestBaseline>,
}

/// Why `rows` cannot be compared metric for metric; empty when they can.
fn comparability(rows: &[ModelRow], reports: &[Option<TestReport>]) -> Vec<String> {
    let mut problems = Vec::new();
    for (r, t) in rows.iter().zip(reports) {
        if t.is_none() {
            problems.push(format!(
                "`{}` has no test metrics of a predictive model",
                r.model.name
            ));
        }
    }
    let mut differ = |what: &str, why: &str, values: Vec<String>| {
        let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
        for (r, v) in rows.iter().zip(values) {
            match groups.iter_mut().find(|(g, _)| *g == v) {
                Some((_, names)) => names.push(&r.model.name),
                None => groups.push((v, vec![&r.model.name])),
            }
        }
        if groups.len() > 1 {
            let parts: Vec<String> = groups
                .iter()
                .map(|(v, names)| {
                    format!(
                        "{v} for {}",
                        names
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
                .collect();
            problems.push(format!("{what} differ ({why}): {}", parts.join("; ")));
        }
    };
    differ(
        "tasks",
        "their metrics measure different things",
        rows.iter().map(|r| r.model.task.clone()).collect(),
    );
    differ(
        "targets",
        "they predict different labels",
        rows.iter()
            .map(|r| format!("`{}`", r.model.target))
            .collect(),
    );
    differ(
        "datasets",
        "features computed from different chain data",
        rows.iter()
            .map(|r| {
                r.model
                    .dataset_hash
                    .as_deref()
                    .map_or("an unknown dataset".into(), |h| {
                        format!("dataset {}", short(h))
                    })
            })
            .collect(),
    );
    differ(
        "test splits",
        "scored on different rows",
        reports
            .iter()
            .map(|t| {
                t.as_ref().map_or("no test split".into(), |t| {
                    format!(
                        "blocks {}..{} ({} rows)",
                        t.first_block, t.last_block, t.rows
                    )
                })
            })
            .collect(),
    );
    // All unknown is no difference above, but no evidence of the same data either.
    if rows.iter().all(|r| r.model.dataset_hash.is_none()) {
        problems.push("the dataset is unknown (no dataset hash): cannot tell whether the models saw the same data".into());
    }
    problems
}

fn compare(rows: &[ModelRow], json: bool) -> anyhow::Result<ExitCode> {
    let reports: Vec<Option<TestReport>> = rows.iter().map(test_report).collect();
    let problems = comparability(rows, &reports);
    let comparable = problems.is_empty();
    // The metrics of the first model's task (all share it when comparable).
    let names = reports
        .iter()
        .flatten()
        .next()
        .map(|t| metric_names(&t.model))
        .unwrap_or_default();
    let compared: Vec<Compared> = rows
        .iter()
        .zip(&reports)
        .map(|(r, t)| Compared {
            id: r.id,
            name: r.model.name.clone(),
            kind: r.model.kind.clone(),
            task: r.model.task.clone(),
            target: r.model.target.clone(),
            dataset_hash: r.model.dataset_hash.clone(),
            window: r.model.window,
            test_split: t.as_ref().map(|t| TestSplit {
                rows: t.rows,
                first_block: t.first_block,
                last_block: t.last_block,
            }),
            metrics: t
                .as_ref()
                .map(|t| metric_values(&t.model))
                .unwrap_or_default(),
            baselines: t
                .iter()
                .flat_map(|t| &t.baselines)
                .map(|b| BaselineMetrics {
                    name: b.name.clone(),
                    metrics: metric_values(&b.metrics),
                })
                .collect(),
            best_baseline: t.as_ref().and_then(|t| {
                let h = headline(t);
                h.best_baseline.map(|b| BestBaseline {
                    name: b.name,
                    metric: h.metric,
                    value: b.value,
                })
            }),
        })
        .collect();
    if json {
        let v = json!({
            "comparable": comparable,
            "problems": problems,
            "metrics": names,
            "models": compared,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }

    let cell = |v: Option<f64>| v.map_or("-".to_owned(), num);
    let mut table: Vec<Vec<String>> = vec![
        std::iter::once(String::new())
            .chain(compared.iter().map(|c| c.name.clone()))
            .collect(),
    ];
    let mut row = |label: &str, cells: Vec<String>| {
        table.push(std::iter::once(label.to_owned()).chain(cells).collect())
    };
    row("id", compared.iter().map(|c| c.id.to_string()).collect());
    row("kind", compared.iter().map(|c| c.kind.clone()).collect());
    row("task", compared.iter().map(|c| c.task.clone()).collect());
    row(
        "target",
        compared.iter().map(|c| c.target.clone()).collect(),
    );
    row(
        "window",
        compared.iter().map(|c| c.window.to_string()).collect(),
    );
    row(
        "dataset",
        compared
            .iter()
            .map(|c| {
                c.dataset_hash
                    .as_deref()
                    .map_or("unknown".into(), |h| short(h).to_owned())
            })
            .collect(),
    );
    row(
        "test blocks",
        compared
            .iter()
            .map(|c| {
                c.test_split.as_ref().map_or("-".into(), |s| {
                    format!("{}..{} ({} rows)", s.first_block, s.last_block, s.rows)
                })
            })
            .collect(),
    );
    for name in &names {
        // The best value of a metric is starred, only when the models are comparable.
        let values: Vec<Option<f64>> = compared
            .iter()
            .map(|c| c.metrics.get(name).copied().flatten())
            .collect();
        let best = values.iter().flatten().copied().reduce(|a, b| {
            if higher_is_better(name) == (b > a) {
                b
            } else {
                a
            }
        });
        row(
            name,
            values
                .iter()
                .map(|v| {
                    let star = comparable && compared.len() > 1 && v.is_some() && *v == best;
                    format!("{}{}", cell(*v), if star { " *" } else { "" })
                })
                .collect(),
        );
    }
    row(
        "best baseline",
        compared
            .iter()
            .map(|c| {
                c.best_baseline.as_ref().map_or("-".into(), |b| {
                    format!("{} {} {}", b.name, b.metric, num(b.value))
                })
            })
            .collect(),
    );
    let numeric: Vec<usize> = (1..=compared.len()).collect();
    print_table(&table, &numeric);
    if comparable {
        println!("comparable: same task, target, dataset and test split (* = best)");
    } else {
        println!("NOT COMPARABLE, the metrics above are side by side only:");
        for p in &problems {
            println!("  - {p}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(rows: &[Vec<String>], right_aligned: &[usize]) {
    print_table_indented(rows, right_aligned, "");
}

/// Columns padded to their widest cell; `right_aligned` columns (numbers) pad on the left.
fn print_table_indented(rows: &[Vec<String>], right_aligned: &[usize], indent: &str) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| {
                if right_aligned.contains(&c) {
                    format!("{s:>w$}", w = widths[c])
                } else {
                    format!("{s:<w$}", w = widths[c])
                }
            })
            .collect();
        println!("{indent}{}", cells.join("  ").trim_end());
    }
}

/// `items` joined by ", " into lines of about `width` characters.
fn wrap(items: &[String], width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for (i, item) in items.iter().enumerate() {
        let last = lines.last_mut().expect("one line");
        if !last.is_empty() && last.len() + item.len() + 1 > width {
            lines.push(String::new());
        }
        let last = lines.last_mut().expect("one line");
        last.push_str(item);
        if i + 1 < items.len() {
            last.push(',');
            last.push(' ');
        }
    }
    lines.iter().map(|l| l.trim_end().to_owned()).collect()
}

/// Four decimals, or four significant digits in scientific notation for small and large values.
fn num(v: f64) -> String {
    if v == 0.0 || (0.01..100_000.0).contains(&v.abs()) {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

/// The first 12 hex digits, enough to tell hashes apart.
fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// `YYYY-MM-DD HH:MM UTC` of unix seconds.
fn utc(ts: i64) -> String {
    dexlab_data::inspect::utc_datetime(ts, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_704_412_800 + 3_600 + 120), "2024-01-05 01:02 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn wrap_keeps_items_whole() {
        let items: Vec<String> = ["aaaa", "bbbb", "cc", "dddddddddd"]
            .map(String::from)
            .to_vec();
        assert_eq!(wrap(&items, 12), ["aaaa, bbbb,", "cc,", "dddddddddd"]);
        assert_eq!(wrap(&items, 100), ["aaaa, bbbb, cc, dddddddddd"]);
        assert_eq!(wrap(&[], 10), [""]);
    }

    #[test]
    fn numbers_keep_four_significant_digits() {
        assert_eq!(num(0.5), "0.5000");
        assert_eq!(num(1.234_56e-7), "1.235e-7");
        assert_eq!(num(0.0), "0.0000");
    }
}
