//! Walk-forward evolve experiments recorded in the store: created or resumed, every generation
//! and fold stored as it completes, and ended in a state (`done`, `failed` with the reason, or
//! `interrupted`).
//!
//! [`Experiment::open`] does everything that can be refused before any work (names, the genome,
//! the output folder and its checkpoint, the walk-forward windows, the store the checkpoint
//! belongs to) and marks the experiment running; [`Experiment::run`] optimises fold by fold.
//!
//! A checkpoint records the experiment it belongs to (id, name, creation time) and the store it
//! was made against. A rerun resumes it only when this run's store holds that same experiment:
//! the same store under another spelling of its URL (a bare path, a moved file) resumes, another
//! store is refused with [`LabError::CheckpointOfAnotherStore`], which names the checkpoint's store
//! and says what to do. Resuming into another store cannot be done right: the folds and
//! generations already run were stored in the first one, so the experiment would be split
//! across two stores (or written into an unrelated experiment that has the same id there), and
//! neither report would be whole.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dexlab_data::outdir::{self, OutputLock};
use dexlab_evolve::backtest::ExecConfig;
use dexlab_evolve::config::ExperimentConfig;
use dexlab_evolve::optimise::{GenStats, Individual};
use dexlab_evolve::tape::Tape;
use dexlab_evolve::walkforward::{
    Checkpoint, FoldResult, Progress as WalkProgress, RunSpec, run_experiment_with,
    walk_forward_windows,
};
use dexlab_store::{
    EquityPoint, ExperimentRow, ExperimentStatus, FoldRow, GenerationRow, IndividualRow,
    NewExperiment, NewRun, Runner, Store,
};
use dexlab_strategy::{ModelHandle, ParamSpace, registry};
use dexlab_types::RunKind;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use crate::error::{Context, LabError, Result, refuse};
use crate::experiments::{host_name, now_secs};
use crate::model::{ModelWindow, load_model, model_window};
use crate::progress::{Event, Progress};

/// An evolve run as asked for, its config already validated.
#[derive(Debug, Clone)]
pub struct EvolveRequest {
    /// Dataset folder.
    pub data: PathBuf,
    pub strategy: String,
    /// Checked with `ExperimentConfig::validate` by the caller.
    pub config: ExperimentConfig,
    /// Where the config came from, for messages: its file, or `default config`.
    pub config_source: String,
    pub seed: u64,
    /// Model directory of a model-driven strategy.
    pub model: Option<PathBuf>,
    /// Fitness threads; 0 = every core. More than the cores are capped, with a warning.
    pub threads: usize,
    /// Default: `STRATEGY-seedN`.
    pub name: Option<String>,
    /// Checkpoint and result folder; default: `experiments/NAME`.
    pub out: Option<PathBuf>,
    /// Start over in an `out` that holds another run, or a checkpoint of another store.
    pub force: bool,
}

impl EvolveRequest {
    /// What can be refused without the store or the data: the strategy (known, with parameters
    /// whose genome the GA's operators fit) and the experiment's name. Returns the name and the
    /// output folder. [`Experiment::open`] checks it again.
    pub fn check(&self) -> Result<(String, PathBuf)> {
        let info = registry::info(&self.strategy)?;
        if info.params.is_empty() {
            refuse!("strategy `{}` has no parameters to optimise", self.strategy);
        }
        if let Err(m) = self.config.ga.check_genome(info.params.len()) {
            refuse!("{m} (strategy `{}`; {})", self.strategy, self.config_source);
        }
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-seed{}", self.strategy, self.seed));
        dexlab_store::validate_experiment_name(&name).context(if self.name.is_some() {
            "--name"
        } else {
            "the default experiment name; pass --name"
        })?;
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("experiments").join(&name));
        Ok((name, out))
    }
}

/// Fitness computed somewhere other than this process (e.g.
/// `crate::distributed::NatsEval`), and what the experiment records about it in its summary.
pub trait Remote: dexlab_evolve::optimise::RemoteEval {
    fn record(&self) -> serde_json::Value;
}

/// What a checkpoint's tag says about the experiment it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Owner {
    experiment_id: i64,
    /// Recorded since checkpoints say which store they belong to; `None` in older ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    experiment_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    experiment_created_at: Option<i64>,
    /// The store's URL, password scrubbed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    store: Option<String>,
}

impl Owner {
    fn of(tag: &serde_json::Value) -> Option<Owner> {
        serde_json::from_value(tag.clone()).ok()
    }
}

/// Whether `row` (what this run's store holds at the checkpoint's experiment id) is the
/// experiment the checkpoint belongs to: same name and creation time as recorded, and the same
/// strategy, dataset and seed as this run. An error that says whose checkpoint it is otherwise.
fn check_owner(
    owner: &Owner,
    row: Option<&ExperimentRow>,
    spec: &RunSpec,
    store: &Store,
    checkpoint: &Path,
) -> Result<()> {
    let same = row.is_some_and(|e| {
        owner.experiment_name.as_ref().is_none_or(|n| *n == e.name)
            && owner
                .experiment_created_at
                .is_none_or(|t| t == e.created_at)
            && e.strategy == spec.strategy
            && e.dataset_hash == spec.dataset_hash
            && e.seed == spec.seed
    });
    if same {
        return Ok(());
    }
    let here = format!("{} store at {}", store.backend(), store.url());
    let found = match row {
        None => format!(
            "this run's store ({here}) has no experiment {}",
            owner.experiment_id
        ),
        Some(e) => format!(
            "this run's store ({here}) holds another experiment {} there, `{}` ({} on {}, seed {})",
            e.id, e.name, e.strategy, e.dataset, e.seed
        ),
    };
    Err(LabError::CheckpointOfAnotherStore {
        checkpoint: checkpoint.to_owned(),
        id: owner.experiment_id,
        name: owner
            .experiment_name
            .clone()
            .or_else(|| row.map(|e| e.name.clone()))
            .unwrap_or_else(|| "?".into()),
        owner: owner.store.clone(),
        found,
    })
}

/// An experiment ready to run: stored (created, or found again to resume) and marked running,
/// its output folder locked.
pub struct Experiment {
    id: i64,
    name: String,
    out: PathBuf,
    checkpoint: PathBuf,
    resumed: bool,
    cfg: ExperimentConfig,
    tape: Tape,
    exec: ExecConfig,
    spec: RunSpec,
    window: Option<ModelWindow>,
    threads: usize,
    /// What the checkpoint records about the experiment it belongs to.
    owner: Owner,
    _lock: OutputLock,
}

/// A finished experiment.
#[derive(Debug, Clone)]
pub struct EvolveOutcome {
    pub experiment_id: i64,
    pub name: String,
    /// Every fold, in order.
    pub folds: Vec<FoldResult>,
    /// What the store keeps as the experiment's summary: out-of-sample totals per run kind.
    pub summary: serde_json::Value,
    pub threads: usize,
    pub seconds: f64,
    /// `result.json` in the output folder.
    pub result_path: PathBuf,
}

impl Experiment {
    /// Checks the request, takes the output folder, creates the experiment in `store` (or finds
    /// the one its checkpoint belongs to) and marks it running. Nothing is stored or cleared
    /// before every check has passed.
    ///
    /// Blocks on `rt` for the store: call it from outside the runtime's async threads.
    pub fn open(
        req: EvolveRequest,
        store: &Store,
        rt: &Handle,
        progress: &mut dyn Progress,
    ) -> Result<Experiment> {
        let cfg = req.config.clone();
        let (name, out) = req.check()?;
        // One writer per folder for the whole run; the kernel releases it if the process dies.
        let lock = OutputLock::acquire(&out)?;
        let ck_path = out.join("checkpoint.json");
        // Names are unique per store. Checked before any work; a rerun that resumes its
        // checkpoint keeps its experiment (and name), and is checked below instead.
        if !ck_path.exists() {
            check_name_free(store, rt, &name)?;
        }
        let tape = Tape::load(&req.data)?;
        let mut exec = cfg.backtest.resolve(&tape, req.seed)?;
        let model = load_model(req.model.as_deref(), &req.strategy)?;
        let folds = cfg.walk_forward.folds;
        let window = model
            .as_ref()
            .map(|m| {
                model_window(
                    &tape,
                    m,
                    2 * (folds + 1),
                    &format!("for {folds} walk-forward folds"),
                )
            })
            .transpose()?;
        if let Some(w) = &window {
            progress.event(Event::Note(&w.note));
        }
        // Every parameter set the optimiser tries asks the model about the same blocks: memoise.
        exec.env.model = model.map(|m| ModelHandle::memoised(m.handle));
        let spec = RunSpec {
            strategy: req.strategy.clone(),
            config: cfg.clone(),
            seed: req.seed,
            dataset_hash: tape.dataset_hash.clone(),
            model: exec.env.model.as_ref().map(|m| m.id().to_owned()),
            blocks: window.as_ref().map(|w| w.evaluated_blocks),
        };
        let loaded = match Checkpoint::load(&ck_path) {
            Ok(c) => c.filter(|c| c.fingerprint == spec.fingerprint()),
            // Replaced below.
            Err(_) if req.force => None,
            Err(e) => return Err(e.into()),
        };
        // The checkpoint of this very run: resumed only into the store it belongs to.
        let mut resumed = None;
        if let Some(c) = loaded {
            let owner = Owner::of(&c.tag).ok_or_else(|| {
                LabError::Refused(format!(
                    "{}: records no experiment id; pass --force to start over",
                    ck_path.display()
                ))
            })?;
            let row = rt.block_on(store.find_experiment(&owner.experiment_id.to_string()))?;
            let row = row.filter(|e| e.id == owner.experiment_id);
            match check_owner(&owner, row.as_ref(), &spec, store, &ck_path) {
                Ok(()) => resumed = Some(owner),
                // Started over in this store: the checkpoint goes with the rest of --out.
                Err(_) if req.force => {}
                Err(e) => return Err(e),
            }
        }
        // Resume only a run this one can prove is the same (its checkpoint's fingerprint, its
        // store); anything else in --out is another run's, replaced only when asked.
        let replace = resumed.is_none() && !outdir::is_empty_or_absent(&out)?;
        if replace && !req.force {
            let what = if ck_path.exists() {
                "the checkpoint of another run (another strategy, config, seed, dataset or model)"
            } else {
                "files that are not an evolve checkpoint"
            };
            return Err(outdir::exists_error(&out, what).into());
        }
        // Refused before anything is cleared or stored: too few blocks with events for the
        // windows.
        walk_forward_windows(&tape, &spec)
            .with_context(|| format!("dataset {}", req.data.display()))?;
        if resumed.is_none() {
            check_name_free(store, rt, &name)?;
        }
        if replace {
            outdir::clear(&out)?;
        }
        std::fs::create_dir_all(&out).map_err(|e| LabError::io(&out, e))?;
        let created_at = now_secs();
        let id = match &resumed {
            Some(o) => {
                let id = o.experiment_id;
                progress.event(Event::Note(&format!(
                    "resuming experiment {id} from {}",
                    ck_path.display()
                )));
                id
            }
            None => rt.block_on(store.create_experiment(&NewExperiment {
                name: name.clone(),
                strategy: req.strategy.clone(),
                dataset: req.data.display().to_string(),
                dataset_hash: tape.dataset_hash.clone(),
                config: {
                    let mut c =
                        serde_json::to_value(&cfg).map_err(|e| LabError::json("config", e))?;
                    if let Some(m) = &spec.model {
                        c["model"] = m.clone().into();
                    }
                    if let Some(w) = &window {
                        c["model_window"] = serde_json::to_value(w)
                            .map_err(|e| LabError::json("model window", e))?;
                    }
                    c
                },
                seed: req.seed,
                created_at,
            }))?,
        };
        let runner = Runner {
            pid: i64::from(std::process::id()),
            host: host_name(),
            at: now_secs(),
        };
        rt.block_on(store.mark_running(id, &runner))
            .with_context(|| format!("marking experiment {id} running"))?;
        let (threads, warning) = fitness_threads(
            req.threads,
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        );
        if let Some(w) = warning {
            progress.event(Event::Warning(&w));
        }
        let was_resumed = resumed.is_some();
        let owner = resumed.unwrap_or_else(|| Owner {
            experiment_id: id,
            experiment_name: Some(name.clone()),
            experiment_created_at: Some(created_at),
            store: Some(store.url().to_owned()),
        });
        Ok(Experiment {
            id,
            name,
            out,
            checkpoint: ck_path,
            resumed: was_resumed,
            cfg,
            tape,
            exec,
            spec,
            window,
            threads,
            owner,
            _lock: lock,
        })
    }

    /// The experiment's id in the store.
    pub fn id(&self) -> i64 {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it resumes a checkpoint.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The output folder (checkpoint, `result.json`).
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// Runs the walk-forward optimisation, recording every generation and fold in `store`,
    /// then the summary; the experiment ends `done`, or `failed` with the reason.
    ///
    /// Blocks on `rt` for the store: call it from outside the runtime's async threads.
    pub fn run(
        self,
        store: &Store,
        rt: &Handle,
        progress: &mut dyn Progress,
    ) -> Result<EvolveOutcome> {
        self.run_with(store, rt, progress, None)
    }

    /// [`Experiment::run`] with the optimiser's fitness computed by `remote` (the same result;
    /// the summary records where it was computed).
    pub fn run_with(
        self,
        store: &Store,
        rt: &Handle,
        progress: &mut dyn Progress,
        remote: Option<&dyn Remote>,
    ) -> Result<EvolveOutcome> {
        let id = self.id;
        let outcome = self.optimise(store, rt, progress, remote);
        progress.event(Event::Finished);
        if let Err(e) = &outcome {
            // Every run ends in a state: a failure is stored with its reason.
            let reason = crate::error_chain(e);
            if let Err(store_err) =
                rt.block_on(store.fail_experiment(id, ExperimentStatus::Failed, &reason))
            {
                progress.event(Event::Warning(&format!(
                    "experiment {id} could not be marked failed: {}",
                    crate::error_chain(&store_err)
                )));
            }
        }
        outcome
    }

    fn optimise(
        &self,
        store: &Store,
        rt: &Handle,
        progress: &mut dyn Progress,
        remote: Option<&dyn Remote>,
    ) -> Result<EvolveOutcome> {
        let cfg = &self.cfg;
        let id = self.id;
        let steps_per_fold = cfg.ga.generations + 1;
        progress.event(Event::Started {
            total: (cfg.walk_forward.folds * steps_per_fold) as u64,
        });
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .build()
            .map_err(|e| LabError::Refused(format!("the fitness thread pool: {e}")))?;
        let started = std::time::Instant::now();
        let mut store_err: Option<LabError> = None;
        // Used when the checkpoint is new (a resumed one keeps its own).
        let tag =
            serde_json::to_value(&self.owner).map_err(|e| LabError::json("checkpoint tag", e))?;
        let (folds, _) = pool.install(|| {
            run_experiment_with(
                &self.tape,
                &self.spec,
                &self.exec,
                &self.checkpoint,
                tag,
                remote.map(|r| r as &dyn dexlab_evolve::optimise::RemoteEval),
                &mut |p| {
                    let r = match p {
                        WalkProgress::Generation {
                            fold,
                            stats,
                            population,
                            space,
                        } => {
                            progress.event(Event::Generation {
                                fold,
                                position: (fold * steps_per_fold + stats.generation + 1) as u64,
                                best: stats.best,
                            });
                            rt.block_on(async {
                                store_generation(store, id, fold, stats, population, space).await?;
                                // Progress is the heartbeat that tells a live run from a dead
                                // one.
                                store.heartbeat(id, now_secs()).await?;
                                Ok::<(), LabError>(())
                            })
                        }
                        WalkProgress::FoldDone(f) => rt.block_on(store_fold(store, id, f)),
                    };
                    if let Err(e) = r {
                        store_err.get_or_insert(e);
                    }
                },
            )
        })?;
        if let Some(e) = store_err {
            return Err(LabError::Context {
                context: "writing the experiment to the store".into(),
                source: Box::new(e),
            });
        }
        let seconds = started.elapsed().as_secs_f64();
        let mut summary = summarise(
            &folds,
            &self.spec,
            self.window.as_ref(),
            self.threads,
            seconds,
        );
        if let Some(r) = remote {
            summary["distributed"] = r.record();
        }
        rt.block_on(store.set_experiment_status(id, ExperimentStatus::Done, Some(&summary)))?;
        let result_path = self.out.join("result.json");
        let result = serde_json::json!({
            "experiment_id": id,
            "summary": summary,
            "folds": folds,
        });
        let bytes =
            serde_json::to_vec_pretty(&result).map_err(|e| LabError::json("result.json", e))?;
        std::fs::write(&result_path, bytes)
            .map_err(|e| LabError::io(&result_path, e))
            .with_context(|| format!("writing {}", result_path.display()))?;
        Ok(EvolveOutcome {
            experiment_id: id,
            name: self.name.clone(),
            folds,
            summary,
            threads: self.threads,
            seconds,
            result_path,
        })
    }
}

/// Refuses a name another experiment of `store` holds.
fn check_name_free(store: &Store, rt: &Handle, name: &str) -> Result<()> {
    if let Some(held) = rt.block_on(store.experiment_by_name(name))? {
        refuse!(
            "experiment name `{name}` is already taken by experiment {} ({}, strategy {}, \
             dataset {}); names are unique per store: choose another --name",
            held.id,
            held.status,
            held.strategy,
            held.dataset
        );
    }
    Ok(())
}

/// How a run was stopped by a signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interruption {
    /// `SIGINT (Ctrl-C)` or `SIGTERM`.
    pub signal: &'static str,
    /// The exit status a process stopped by it should end with (130 or 143).
    pub exit_code: u8,
    /// What was stored as the reason.
    pub reason: String,
    /// Whether the store took the `interrupted` mark (within 5 s).
    pub marked: bool,
}

/// Waits for SIGINT or SIGTERM, then marks `experiment_id` interrupted with the reason and
/// returns what happened; the caller decides whether the process ends. `None` when the signals
/// cannot be watched.
pub async fn interrupt_on_signal(store: Store, experiment_id: i64) -> Option<Interruption> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok()?;
    let (which, code) = tokio::select! {
        r = tokio::signal::ctrl_c() => match r {
            Ok(()) => ("SIGINT (Ctrl-C)", 130),
            Err(_) => return None,
        },
        _ = term.recv() => ("SIGTERM", 143),
    };
    let reason = format!(
        "stopped by {which}; rerun the same command (same --out) to resume from its checkpoint"
    );
    let marked = tokio::time::timeout(
        Duration::from_secs(5),
        store.fail_experiment(experiment_id, ExperimentStatus::Interrupted, &reason),
    )
    .await;
    Some(Interruption {
        signal: which,
        exit_code: code,
        reason,
        marked: matches!(marked, Ok(Ok(()))),
    })
}

/// The fitness pool's size for `requested` threads on a machine with `available` cores (0 =
/// all of them). More threads than cores only contend for them (a run with `--threads 9999` was
/// 300 times slower), and the result does not depend on the count, so more is capped to the
/// cores, with a warning.
pub fn fitness_threads(requested: usize, available: usize) -> (usize, Option<String>) {
    let available = available.max(1);
    match requested {
        0 => (available, None),
        n if n > available => (
            available,
            Some(format!(
                "--threads {n} is more than the {available} cores this machine has: using \
                 {available} threads (extra threads only contend for the cores; the result does \
                 not depend on the thread count)"
            )),
        ),
        n => (n, None),
    }
}

/// Out-of-sample totals per run kind, the figure the README reports.
fn summarise(
    folds: &[FoldResult],
    spec: &RunSpec,
    window: Option<&ModelWindow>,
    threads: usize,
    secs: f64,
) -> serde_json::Value {
    let mut per_kind = serde_json::Map::new();
    for k in RunKind::ALL {
        let runs: Vec<_> = folds.iter().filter_map(|f| f.run(k)).collect();
        let n = runs.len().max(1) as f64;
        per_kind.insert(
            k.as_str().into(),
            serde_json::json!({
                "in_sample_objective_mean": runs.iter().map(|r| r.train_objective).sum::<f64>() / n,
                "out_of_sample_objective_mean": runs.iter().map(|r| r.test_objective).sum::<f64>() / n,
                "out_of_sample_net_pnl_quote": runs.iter().map(|r| r.test_metrics.net_pnl_quote).sum::<f64>(),
                "out_of_sample_gas_quote": runs.iter().map(|r| r.test_metrics.gas_spent_quote).sum::<f64>(),
                "out_of_sample_bundles": runs.iter().map(|r| r.test_metrics.trades).sum::<u64>(),
                "out_of_sample_reverts": runs.iter().map(|r| r.test_metrics.reverts).sum::<u64>(),
                "out_of_sample_rival_fills": runs.iter().map(|r| r.test_metrics.rival_fills).sum::<u64>(),
                "out_of_sample_close_cost_quote": runs.iter().map(|r| r.test_metrics.close_cost_quote).sum::<f64>(),
                "out_of_sample_diverged_events": runs.iter().map(|r| r.test_metrics.diverged_events).sum::<u64>(),
                "errors": runs.iter().map(|r| r.train_metrics.errors + r.test_metrics.errors).sum::<u64>(),
                "first_error": runs.iter().find_map(|r| r.test_metrics.first_error.clone().or_else(|| r.train_metrics.first_error.clone())),
            }),
        );
    }
    serde_json::json!({
        "strategy": spec.strategy,
        "model": spec.model,
        "model_window": window,
        "seed": spec.seed,
        "objective": spec.config.ga.objective,
        "folds": folds.len(),
        "threads": threads,
        "seconds": secs,
        "evaluations": folds.iter().map(|f| f.evaluations).sum::<u64>(),
        "queue_assumption": folds
            .iter()
            .flat_map(|f| &f.runs)
            .find_map(|r| r.test_metrics.queue_assumption.clone()),
        "runs": per_kind,
    })
}

async fn store_generation(
    store: &Store,
    experiment_id: i64,
    fold: usize,
    stats: &GenStats,
    population: &[Individual],
    space: &ParamSpace,
) -> Result<()> {
    let run_id = ga_run(store, experiment_id, fold).await?;
    let objectives: Vec<f64> = population.iter().map(|i| i.objective).collect();
    let fittest = population
        .iter()
        .max_by_key(|i| i.fitness)
        .map_or(0.0, |i| i.objective);
    let mean = objectives.iter().sum::<f64>() / objectives.len().max(1) as f64;
    let worst = objectives.iter().copied().fold(f64::INFINITY, f64::min);
    let rows: Vec<IndividualRow> = population
        .iter()
        .enumerate()
        .map(|(i, ind)| IndividualRow {
            idx: i as i32,
            params: space.decode(&ind.genome).to_json(space),
            fitness: ind.objective,
        })
        .collect();
    store
        .add_generation(
            &GenerationRow {
                run_id,
                generation: stats.generation as i32,
                best: fittest,
                mean,
                worst: if worst.is_finite() { worst } else { 0.0 },
                evaluations: stats.evaluations as i64,
            },
            &rows,
        )
        .await?;
    Ok(())
}

async fn ga_run(store: &Store, experiment_id: i64, fold: usize) -> Result<i64> {
    Ok(
        match store
            .find_run(experiment_id, fold as i32, RunKind::Ga)
            .await?
        {
            Some(r) => r.id,
            None => {
                store
                    .add_run(&NewRun {
                        experiment_id,
                        fold: fold as i32,
                        kind: RunKind::Ga,
                        params: serde_json::json!({}),
                        train_objective: None,
                        test_objective: None,
                    })
                    .await?
            }
        },
    )
}

async fn store_fold(store: &Store, experiment_id: i64, f: &FoldResult) -> Result<()> {
    store
        .add_fold(&FoldRow {
            experiment_id,
            fold: f.fold as i32,
            train_from: f.train_blocks.0,
            train_to: f.train_blocks.1,
            test_from: f.test_blocks.0,
            test_to: f.test_blocks.1,
        })
        .await?;
    for r in &f.runs {
        let id = match store.find_run(experiment_id, f.fold as i32, r.kind).await? {
            Some(row) => row.id,
            None => {
                store
                    .add_run(&NewRun {
                        experiment_id,
                        fold: f.fold as i32,
                        kind: r.kind,
                        params: r.params.clone(),
                        train_objective: Some(r.train_objective),
                        test_objective: Some(r.test_objective),
                    })
                    .await?
            }
        };
        store
            .update_run(
                id,
                &r.params,
                Some(r.train_objective),
                Some(r.test_objective),
            )
            .await?;
        let metrics = |m| serde_json::to_value(m).map_err(|e| LabError::json("metrics", e));
        store
            .add_metrics(id, "train", &metrics(&r.train_metrics)?)
            .await?;
        store
            .add_metrics(id, "test", &metrics(&r.test_metrics)?)
            .await?;
        let pts: Vec<EquityPoint> = r.test_equity.iter().map(EquityPoint::from).collect();
        store.add_equity(id, "test", &pts).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--threads 9999` ran 300 times slower than on the machine's cores: it is capped to them,
    /// with a warning that says so (the result does not depend on the thread count).
    #[test]
    fn threads_beyond_the_cores_are_capped_with_a_warning() {
        let (n, warning) = fitness_threads(9999, 2);
        assert_eq!(n, 2);
        let w = warning.expect("a warning");
        assert!(w.contains("--threads 9999"), "{w}");
        assert!(w.contains("2 cores") || w.contains("2 threads"), "{w}");
        assert_eq!(fitness_threads(0, 8), (8, None));
        assert_eq!(fitness_threads(2, 8), (2, None));
        assert_eq!(fitness_threads(8, 8), (8, None));
    }

    /// Checkpoints of older dexlabs recorded the experiment id only; they still read, and the
    /// new fields round-trip.
    #[test]
    fn checkpoint_tags_old_and_new() {
        let old = Owner::of(&serde_json::json!({"experiment_id": 3})).unwrap();
        assert_eq!((old.experiment_id, old.store), (3, None));
        let new = Owner {
            experiment_id: 1,
            experiment_name: Some("arb".into()),
            experiment_created_at: Some(17),
            store: Some("sqlite:///tmp/a.sqlite".into()),
        };
        let v = serde_json::to_value(&new).unwrap();
        assert_eq!(
            v["experiment_id"], 1,
            "older readers find the id where it was"
        );
        assert_eq!(Owner::of(&v).unwrap(), new);
        assert!(Owner::of(&serde_json::json!({})).is_none());
    }

    /// A checkpoint is resumed only into the experiment it belongs to: the same id, name and
    /// creation time, and the run's strategy, dataset and seed; anything else names the store
    /// the checkpoint was made against.
    #[tokio::test]
    async fn a_checkpoint_belongs_to_one_experiment_of_one_store() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let spec = RunSpec {
            strategy: "price-reversion".into(),
            config: ExperimentConfig::default(),
            seed: 5,
            dataset_hash: "h".into(),
            model: None,
            blocks: None,
        };
        let id = store
            .create_experiment(&NewExperiment {
                name: "mine".into(),
                strategy: spec.strategy.clone(),
                dataset: "ds".into(),
                dataset_hash: "h".into(),
                config: serde_json::json!({}),
                seed: 5,
                created_at: 10,
            })
            .await
            .unwrap();
        let row = store.find_experiment("mine").await.unwrap();
        let owner = Owner {
            experiment_id: id,
            experiment_name: Some("mine".into()),
            experiment_created_at: Some(10),
            store: Some("sqlite:///elsewhere/a.sqlite".into()),
        };
        let ck = Path::new("/runs/x/checkpoint.json");
        check_owner(&owner, row.as_ref(), &spec, &store, ck).unwrap();

        let text = |o: &Owner, row: Option<&ExperimentRow>, spec: &RunSpec| {
            crate::error_chain(&check_owner(o, row, spec, &store, ck).unwrap_err())
        };
        // Another experiment under the same id (created at another time).
        let other = Owner {
            experiment_created_at: Some(11),
            ..owner.clone()
        };
        let e = text(&other, row.as_ref(), &spec);
        assert!(
            e.contains("/runs/x/checkpoint.json belongs to experiment 1 `mine`"),
            "{e}"
        );
        assert!(
            e.contains("holds another experiment 1 there, `mine`"),
            "{e}"
        );
        assert!(
            e.contains("DATABASE_URL=sqlite:///elsewhere/a.sqlite"),
            "{e}"
        );
        assert!(e.contains("--force"), "{e}");
        let e = text(&owner, None, &spec);
        assert!(e.contains("has no experiment 1"), "{e}");

        // A checkpoint of an older dexlab (the id alone) is still checked against the run.
        let old = Owner {
            experiment_id: id,
            experiment_name: None,
            experiment_created_at: None,
            store: None,
        };
        check_owner(&old, row.as_ref(), &spec, &store, ck).unwrap();
        let reseeded = RunSpec {
            seed: 6,
            ..spec.clone()
        };
        let e = text(&old, row.as_ref(), &reseeded);
        assert!(e.contains("an older dexlab did not record"), "{e}");
        assert!(e.contains("Point DATABASE_URL at that store"), "{e}");
    }
}
