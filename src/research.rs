//! Research commands: strategies, backtest, evolve, experiments, report.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use dexlab_evolve::backtest;
use dexlab_evolve::config::ExperimentConfig;
use dexlab_evolve::tape::Tape;
use dexlab_evolve::walkforward::{Checkpoint, FoldResult, Progress, RunSpec, run_experiment};
use dexlab_models::artifact::SeenBlocks;
use dexlab_models::scorer::ModelScorer;
use dexlab_store::{
    EquityPoint, FoldRow, GenerationRow, IndividualRow, NewExperiment, NewRun, Store,
};
use dexlab_strategy::{ModelHandle, registry};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

#[derive(Subcommand)]
pub enum StrategiesCmd {
    /// Every strategy with its parameter space (name, type, bounds, default).
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum ExperimentsCmd {
    /// Experiments in the store, newest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One experiment: folds, runs in and out of sample, baselines.
    Show {
        /// Experiment id or name.
        experiment: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct BacktestArgs {
    /// Dataset folder.
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    strategy: String,
    /// Parameter overrides as JSON (`{"min_profit_bps": 2}`) or `@file.json`; the rest default.
    #[arg(long, default_value = "{}")]
    params: String,
    /// Experiment TOML; only its `[backtest]` table is used here.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed of the competition draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Model directory (from `dexlab train`) for a model-driven strategy such as `model-gated`.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Print metrics, trades and the equity curve as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct EvolveArgs {
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    strategy: String,
    /// Experiment TOML (`[backtest]`, `[ga]`, `[walk_forward]`); defaults for what it leaves out.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Model directory (from `dexlab train`) for a model-driven strategy such as `model-gated`.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Fitness threads (rayon pool size); the result does not depend on it.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[arg(long)]
    population: Option<usize>,
    #[arg(long)]
    generations: Option<usize>,
    #[arg(long)]
    folds: Option<usize>,
    /// Experiment name (default: STRATEGY-seedN).
    #[arg(long)]
    name: Option<String>,
    /// Checkpoint and result folder (default: experiments/NAME). Rerunning the same experiment
    /// (same strategy, config, seed, dataset and model) resumes from it.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Start over in a non-empty --out that holds another run.
    #[arg(long)]
    force: bool,
    #[arg(long)]
    quiet: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ReportArgs {
    /// Experiment id or name.
    experiment: String,
    #[arg(long)]
    out: PathBuf,
    /// Replace a non-empty --out (atomically, once the new report is complete).
    #[arg(long)]
    force: bool,
}

use crate::ml::store;

pub fn strategies_list(json: bool) -> anyhow::Result<ExitCode> {
    let list = registry::list();
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    for s in list {
        println!("{}: {}", s.name, s.summary);
        for p in &s.params.specs {
            println!(
                "  {:<22} {:<6} [{}, {}] default {}{}  {}",
                p.name,
                format!("{:?}", p.kind).to_lowercase(),
                p.lo,
                p.hi,
                p.default,
                if p.unit.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", p.unit)
                },
                p.help
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A model-driven strategy's model and the blocks its training saw.
struct LoadedModel {
    handle: ModelHandle,
    seen: SeenBlocks,
}

/// The model of a model-driven strategy; refuses a model the strategy would not read, and one
/// whose training blocks cannot be bounded.
fn load_model(dir: Option<&Path>, strategy: &str) -> anyhow::Result<Option<LoadedModel>> {
    match dir {
        None => Ok(None),
        Some(_) if !registry::needs_model(strategy) => {
            bail!("strategy `{strategy}` does not use a model; drop --model")
        }
        Some(d) => {
            let scorer =
                ModelScorer::load(d).with_context(|| format!("loading model {}", d.display()))?;
            let seen = scorer.predictor().artifact().seen_blocks(d)?;
            Ok(Some(LoadedModel {
                handle: scorer.into_handle(),
                seen,
            }))
        }
    }
}

/// Where a run with a model is evaluated: only on the blocks after those the model's training
/// saw (train and valid splits, plus the blocks their labels read), so that its predictions there
/// are out of sample. Recorded in `--json` output and in the experiment's config.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ModelWindow {
    pub model: String,
    /// `restricted`: the run is confined to `evaluated_blocks` (a window that cannot be
    /// confined is refused instead).
    pub mode: &'static str,
    pub seen: SeenBlocks,
    /// Block numbers evaluated, inclusive.
    pub evaluated_blocks: (u64, u64),
    /// Blocks of the dataset left out before them.
    pub skipped_blocks: usize,
    #[serde(skip)]
    pub range: Range<usize>,
}

/// Confines a run to the blocks after `model`'s training data, or refuses: when the dataset is
/// not the model's (block ranges of another dataset cannot be compared) or fewer than
/// `min_blocks` blocks remain (`need` says what for).
fn model_window(
    tape: &Tape,
    model: &LoadedModel,
    min_blocks: usize,
    need: &str,
) -> anyhow::Result<ModelWindow> {
    let id = model.handle.id();
    let s = &model.seen;
    let short = |h: &str| h[..h.len().min(12)].to_owned();
    match &s.dataset_hash {
        None => bail!(
            "model {id} records no dataset hash (its features folder had no manifest.json): \
             which blocks of this dataset it was trained on cannot be told, so no window can be \
             proven out of sample; retrain it on a `dexlab features build` folder"
        ),
        Some(h) if *h != tape.dataset_hash => bail!(
            "model {id} was trained on features of another dataset (sha256 {}…), not this one \
             ({}…): its train/valid blocks cannot be compared with this dataset's safely; \
             evaluate it on the dataset it was trained on, or retrain it on this one",
            short(h),
            short(&tape.dataset_hash)
        ),
        Some(_) => {}
    }
    let start = tape
        .blocks
        .partition_point(|b| (b.number as i64) < s.first_unseen);
    let n = tape.blocks.len() - start;
    let seen = format!(
        "model {id} saw blocks {}..={} (+embargo {})",
        s.train_blocks.0, s.valid_blocks.1, s.embargo
    );
    if n < min_blocks.max(1) {
        bail!(
            "{seen}: only {n} blocks of this dataset lie after block {}, too few {need} (at \
             least {}); train the model on an earlier part of the data (a smaller `split` train \
             and valid share), or ask for less",
            s.first_unseen - 1,
            min_blocks.max(1)
        );
    }
    let evaluated = (
        tape.blocks[start].number,
        tape.blocks[tape.blocks.len() - 1].number,
    );
    eprintln!(
        "{seen}; evaluating blocks {}..={} only ({n} of the dataset's {} blocks)",
        evaluated.0,
        evaluated.1,
        tape.blocks.len()
    );
    Ok(ModelWindow {
        model: id.to_owned(),
        mode: "restricted",
        seen: s.clone(),
        evaluated_blocks: evaluated,
        skipped_blocks: start,
        range: start..tape.blocks.len(),
    })
}

fn load_config(path: Option<&Path>) -> anyhow::Result<ExperimentConfig> {
    Ok(match path {
        Some(p) => ExperimentConfig::load(p)?,
        None => ExperimentConfig::default(),
    })
}

pub fn backtest_cmd(a: BacktestArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(a.config.as_deref())?;
    let overrides = parse_overrides(&a.params)?;
    let params = registry::parse_params(&a.strategy, &overrides).context("--params")?;
    let tape = Tape::load(&a.data)?;
    let mut exec = cfg.backtest.resolve(&tape, a.seed)?;
    let model = load_model(a.model.as_deref(), &a.strategy)?;
    let window = model
        .as_ref()
        .map(|m| model_window(&tape, m, 2, "for a backtest"))
        .transpose()?;
    exec.env.model = model.map(|m| m.handle);
    let range = window
        .as_ref()
        .map_or(0..tape.blocks.len(), |w| w.range.clone());
    let blocks = range.len();
    let market = tape.market_at(range.start);
    let mut s = registry::build(&a.strategy, &market, &exec.env, &params)?;
    let started = std::time::Instant::now();
    let r = backtest::run(&tape, &market, range, s.as_mut(), &exec, true);
    let space = registry::info(&a.strategy)?.params;
    if a.json {
        let out = serde_json::json!({
            "strategy": a.strategy,
            "params": params.to_json(&space),
            "dataset_hash": tape.dataset_hash,
            "blocks": blocks,
            "model_window": window,
            "metrics": r.metrics,
            "trades": r.trades,
            "equity": r.equity,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let m = &r.metrics;
        println!(
            "{} over {} blocks in {:.2}s with {params}",
            a.strategy,
            blocks,
            started.elapsed().as_secs_f64()
        );
        println!(
            "net PnL {:.6} quote ({}), return {:.4} %, gas {:.6}",
            m.net_pnl_quote,
            m.net_pnl_usd
                .map_or("no USD price".into(), |u| format!("{u:.2} USD")),
            m.return_pct,
            m.gas_spent_quote
        );
        println!(
            "bundles {} filled {} reverted {} rejected {} lost to competition {}; hit rate {:.3}",
            m.trades, m.filled, m.reverts, m.rejected, m.lost_to_competition, m.hit_rate
        );
        println!(
            "Sharpe {:.3} Sortino {:.3} max drawdown {:.4} Calmar {:.3} turnover {:.3} exposure {:.3}",
            m.sharpe, m.sortino, m.max_drawdown, m.calmar, m.turnover, m.exposure
        );
        println!(
            "rival fills {}; historical events replayed on pools we moved {} ({} could not \
             execute); closing open positions cost {:.6} quote",
            m.rival_fills, m.diverged_events, m.failed_flows, m.close_cost_quote
        );
        if let Some(q) = &m.queue_assumption {
            println!("assumption: {q}");
        }
        if m.errors > 0 {
            eprintln!(
                "warning: {} error(s) during the run; the figures are not to be trusted. First: {}",
                m.errors,
                m.first_error.as_deref().unwrap_or("?")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn evolve_cmd(a: EvolveArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let mut cfg = load_config(a.config.as_deref())?;
    if let Some(p) = a.population {
        cfg.ga.population = p;
    }
    if let Some(g) = a.generations {
        cfg.ga.generations = g;
    }
    if let Some(f) = a.folds {
        cfg.walk_forward.folds = f;
    }
    cfg.validate()
        .map_err(|m| anyhow::anyhow!("{m} (after command-line overrides)"))?;
    let info = registry::info(&a.strategy)?;
    if info.params.is_empty() {
        bail!("strategy `{}` has no parameters to optimise", a.strategy);
    }
    cfg.ga.check_genome(info.params.len()).map_err(|m| {
        anyhow::anyhow!(
            "{m} (strategy `{}`; {})",
            a.strategy,
            a.config
                .as_deref()
                .map_or("default config".into(), |p| p.display().to_string())
        )
    })?;
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-seed{}", a.strategy, a.seed));
    dexlab_store::validate_experiment_name(&name).with_context(|| {
        if a.name.is_some() {
            "--name"
        } else {
            "the default experiment name; pass --name"
        }
    })?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("experiments").join(&name));
    // One writer per folder for the whole run; the kernel releases it if the process dies.
    let _lock = dexlab_data::outdir::OutputLock::acquire(&out)?;
    let store = store(rt)?;
    // Names are unique per store. Checked before any work; a rerun that resumes its checkpoint
    // keeps its experiment (and name), which `create_experiment` checks again otherwise.
    if !out.join("checkpoint.json").exists()
        && let Some(held) = rt.block_on(store.experiment_by_name(&name))?
    {
        bail!(
            "experiment name `{name}` is already taken by experiment {} ({}, strategy {}, \
             dataset {}); names are unique per store: choose another --name",
            held.id,
            held.status,
            held.strategy,
            held.dataset
        );
    }
    let tape = Tape::load(&a.data)?;
    let mut exec = cfg.backtest.resolve(&tape, a.seed)?;
    let model = load_model(a.model.as_deref(), &a.strategy)?;
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
    // Every parameter set the optimiser tries asks the model about the same blocks: memoise.
    exec.env.model = model.map(|m| ModelHandle::memoised(m.handle));
    let spec = RunSpec {
        strategy: a.strategy.clone(),
        config: cfg.clone(),
        seed: a.seed,
        dataset_hash: tape.dataset_hash.clone(),
        model: exec.env.model.as_ref().map(|m| m.id().to_owned()),
        blocks: window.as_ref().map(|w| w.evaluated_blocks),
    };
    let ck_path = out.join("checkpoint.json");
    let resumed = match Checkpoint::load(&ck_path) {
        Ok(c) => c.filter(|c| c.fingerprint == spec.fingerprint()),
        // Replaced below.
        Err(_) if a.force => None,
        Err(e) => return Err(e.into()),
    };
    // Resume only a run this one can prove is the same (its checkpoint's fingerprint); anything
    // else in --out is another run's, replaced only when asked.
    let replace = resumed.is_none() && !dexlab_data::outdir::is_empty_or_absent(&out)?;
    if replace && !a.force {
        let what = if ck_path.exists() {
            "the checkpoint of another run (another strategy, config, seed, dataset or model)"
        } else {
            "files that are not an evolve checkpoint"
        };
        return Err(dexlab_data::outdir::exists_error(&out, what).into());
    }
    // Refused before anything is cleared or stored: too few blocks with events for the windows.
    dexlab_evolve::walkforward::walk_forward_windows(&tape, &spec)
        .with_context(|| format!("dataset {}", a.data.display()))?;
    if replace {
        dexlab_data::outdir::clear(&out)?;
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let experiment_id = match resumed
        .as_ref()
        .and_then(|c| c.tag.get("experiment_id")?.as_i64())
    {
        Some(id) => id,
        None => rt.block_on(store.create_experiment(&NewExperiment {
            name: name.clone(),
            strategy: a.strategy.clone(),
            dataset: a.data.display().to_string(),
            dataset_hash: tape.dataset_hash.clone(),
            config: {
                let mut c = serde_json::to_value(&cfg)?;
                if let Some(m) = &spec.model {
                    c["model"] = m.clone().into();
                }
                if let Some(w) = &window {
                    c["model_window"] = serde_json::to_value(w)?;
                }
                c
            },
            seed: a.seed,
            created_at: now_secs(),
        }))?,
    };
    if resumed.is_some() {
        eprintln!(
            "resuming experiment {experiment_id} from {}",
            ck_path.display()
        );
    }
    let runner = dexlab_store::Runner {
        pid: i64::from(std::process::id()),
        host: host_name(),
        at: now_secs(),
    };
    rt.block_on(store.mark_running(experiment_id, &runner))
        .with_context(|| format!("marking experiment {experiment_id} running"))?;
    // Ctrl-C or SIGTERM: the experiment is left `interrupted` with the reason, not `running`.
    let on_signal = rt.spawn(interrupt_on_signal(store.clone(), experiment_id));
    let outcome = run_evolve(
        &a,
        rt,
        &store,
        experiment_id,
        &name,
        &out,
        &ck_path,
        EvolveRun {
            cfg: &cfg,
            tape: &tape,
            exec: &exec,
            spec: &spec,
            window: window.as_ref(),
        },
    );
    on_signal.abort();
    if let Err(e) = &outcome {
        // Every run ends in a state: a failure is stored with its reason.
        let reason = format!("{e:#}");
        if let Err(store_err) = rt.block_on(store.fail_experiment(experiment_id, "failed", &reason))
        {
            eprintln!(
                "warning: experiment {experiment_id} could not be marked failed: {store_err:#}"
            );
        }
    }
    outcome
}

/// What `run_evolve` needs from the set-up in `evolve_cmd`.
struct EvolveRun<'a> {
    cfg: &'a ExperimentConfig,
    tape: &'a Tape,
    exec: &'a backtest::ExecConfig,
    spec: &'a RunSpec,
    window: Option<&'a ModelWindow>,
}

/// Waits for SIGINT or SIGTERM, marks the experiment interrupted and exits (130 or 143).
async fn interrupt_on_signal(store: Store, experiment_id: i64) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return;
    };
    let (which, code) = tokio::select! {
        r = tokio::signal::ctrl_c() => match r {
            Ok(()) => ("SIGINT (Ctrl-C)", 130),
            Err(_) => return,
        },
        _ = term.recv() => ("SIGTERM", 143),
    };
    let reason = format!(
        "stopped by {which}; rerun the same command (same --out) to resume from its checkpoint"
    );
    let marked = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        store.fail_experiment(experiment_id, "interrupted", &reason),
    )
    .await;
    match marked {
        Ok(Ok(())) => eprintln!("experiment {experiment_id} interrupted: {reason}"),
        _ => eprintln!(
            "experiment {experiment_id} stopped by {which}; it could not be marked interrupted \
             in the store"
        ),
    }
    std::process::exit(code);
}

/// The optimisation itself, once the experiment exists in the store.
#[allow(clippy::too_many_arguments)]
fn run_evolve(
    a: &EvolveArgs,
    rt: &tokio::runtime::Runtime,
    store: &Store,
    experiment_id: i64,
    name: &str,
    out: &Path,
    ck_path: &Path,
    r: EvolveRun<'_>,
) -> anyhow::Result<ExitCode> {
    let EvolveRun {
        cfg,
        tape,
        exec,
        spec,
        window,
    } = r;
    let total = (cfg.walk_forward.folds * (cfg.ga.generations + 1)) as u64;
    let bar = if a.quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} generations {elapsed} {msg}")
            .expect("a valid template"),
    );
    let (threads, warning) = fitness_threads(
        a.threads,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let started = std::time::Instant::now();
    let mut store_err: Option<anyhow::Error> = None;
    let objective = cfg.ga.objective;
    let (folds, _) = pool.install(|| {
        run_experiment(
            tape,
            spec,
            exec,
            ck_path,
            serde_json::json!({ "experiment_id": experiment_id }),
            &mut |p| {
                let r = match p {
                    Progress::Generation {
                        fold,
                        stats,
                        population,
                        space,
                    } => {
                        bar.set_position(
                            (fold * (cfg.ga.generations + 1) + stats.generation + 1) as u64,
                        );
                        bar.set_message(format!(
                            "fold {} best {}",
                            fold + 1,
                            stats
                                .best
                                .map_or("(none feasible)".into(), |b| format!("{b:.6}"))
                        ));
                        rt.block_on(async {
                            store_generation(store, experiment_id, fold, stats, population, space)
                                .await?;
                            // Progress is the heartbeat that tells a live run from a dead one.
                            store.heartbeat(experiment_id, now_secs()).await?;
                            anyhow::Ok(())
                        })
                    }
                    Progress::FoldDone(f) => rt.block_on(store_fold(store, experiment_id, f)),
                };
                if let Err(e) = r {
                    store_err.get_or_insert(e);
                }
            },
        )
    })?;
    bar.finish_and_clear();
    if let Some(e) = store_err {
        return Err(e.context("writing the experiment to the store"));
    }
    let summary = summarise(
        &folds,
        spec,
        window,
        threads,
        started.elapsed().as_secs_f64(),
    );
    rt.block_on(store.set_experiment_status(experiment_id, "done", Some(&summary)))?;
    let result_path = out.join("result.json");
    std::fs::write(
        &result_path,
        serde_json::to_vec_pretty(&serde_json::json!({
            "experiment_id": experiment_id,
            "summary": summary,
            "folds": folds,
        }))?,
    )
    .with_context(|| format!("writing {}", result_path.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let quote = cfg.backtest.quote.clone();
        println!(
            "experiment {experiment_id} `{name}`: {} folds, objective {}, {:.1}s on {threads} threads",
            folds.len(),
            objective.label(&quote),
            started.elapsed().as_secs_f64()
        );
        println!(
            "{:<5} {:>14} {:>14} {:>14} {:>14} {:>14}",
            "fold", "GA in-sample", "GA out", "random out", "default out", "no-trade out"
        );
        for f in &folds {
            let o = |k: &str| f.run(k).map_or(f64::NAN, |r| r.test_objective);
            let ga_is = f.run("ga").map_or(f64::NAN, |r| r.train_objective);
            println!(
                "{:<5} {:>14.6} {:>14.6} {:>14.6} {:>14.6} {:>14.6}",
                f.fold + 1,
                ga_is,
                o("ga"),
                o("random_search"),
                o("default"),
                o("no_trade")
            );
        }
        if let Some(q) = summary["queue_assumption"].as_str() {
            println!("assumption: {q}");
        }
        let errors: u64 = ["ga", "random_search", "default", "no_trade"]
            .iter()
            .filter_map(|k| summary["runs"][k]["errors"].as_u64())
            .sum();
        if errors > 0 {
            eprintln!(
                "warning: {errors} error(s) in the reported runs; their figures are not to be \
                 trusted. First: {}",
                ["ga", "random_search", "default", "no_trade"]
                    .iter()
                    .find_map(|k| summary["runs"][k]["first_error"].as_str())
                    .unwrap_or("?")
            );
        }
        println!(
            "results: {}; store: {}; report: dexlab report {experiment_id} --out DIR",
            result_path.display(),
            store.backend()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Out-of-sample totals per run kind, the figure the README reports.
fn summarise(
    folds: &[FoldResult],
    spec: &RunSpec,
    window: Option<&ModelWindow>,
    threads: usize,
    secs: f64,
) -> serde_json::Value {
    let kinds = ["ga", "random_search", "default", "no_trade"];
    let mut per_kind = serde_json::Map::new();
    for k in kinds {
        let runs: Vec<_> = folds.iter().filter_map(|f| f.run(k)).collect();
        let n = runs.len().max(1) as f64;
        per_kind.insert(
            k.into(),
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
    stats: &dexlab_evolve::optimise::GenStats,
    population: &[dexlab_evolve::optimise::Individual],
    space: &dexlab_strategy::ParamSpace,
) -> anyhow::Result<()> {
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

async fn ga_run(store: &Store, experiment_id: i64, fold: usize) -> anyhow::Result<i64> {
    Ok(
        match store.find_run(experiment_id, fold as i32, "ga").await? {
            Some(r) => r.id,
            None => {
                store
                    .add_run(&NewRun {
                        experiment_id,
                        fold: fold as i32,
                        kind: "ga".into(),
                        params: serde_json::json!({}),
                        train_objective: None,
                        test_objective: None,
                    })
                    .await?
            }
        },
    )
}

async fn store_fold(store: &Store, experiment_id: i64, f: &FoldResult) -> anyhow::Result<()> {
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
        let id = match store
            .find_run(experiment_id, f.fold as i32, &r.kind)
            .await?
        {
            Some(row) => row.id,
            None => {
                store
                    .add_run(&NewRun {
                        experiment_id,
                        fold: f.fold as i32,
                        kind: r.kind.clone(),
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
        store
            .add_metrics(id, "train", &serde_json::to_value(&r.train_metrics)?)
            .await?;
        store
            .add_metrics(id, "test", &serde_json::to_value(&r.test_metrics)?)
            .await?;
        let pts: Vec<EquityPoint> = r
            .test_equity
            .iter()
            .map(|p| EquityPoint {
                block: p.block,
                equity: p.equity,
            })
            .collect();
        store.add_equity(id, "test", &pts).await?;
    }
    Ok(())
}

pub fn experiments_cmd(
    c: ExperimentsCmd,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<ExitCode> {
    let store = crate::ml::store_existing(rt)?;
    let host = host_name();
    let shown = |e: &dexlab_store::ExperimentRow| shown_status(e, &host, &process_alive);
    match c {
        ExperimentsCmd::List { json } => {
            let list = rt.block_on(store.list_experiments())?;
            if json {
                let rows: Vec<serde_json::Value> = list
                    .iter()
                    .map(|e| with_state(e, &shown(e)))
                    .collect::<anyhow::Result<_>>()?;
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:>4}  {:<32} {:<18} {:<11} {:>6}  dataset",
                    "id", "name", "strategy", "status", "seed"
                );
                for e in list {
                    let status = shown(&e);
                    println!(
                        "{:>4}  {:<32} {:<18} {:<11} {:>6}  {} ({})",
                        e.id,
                        e.name,
                        e.strategy,
                        status.split(' ').next().unwrap_or(&status),
                        e.seed,
                        e.dataset,
                        &e.dataset_hash[..e.dataset_hash.len().min(12)]
                    );
                    if let Some(why) = e.error.as_deref().or_else(|| {
                        status
                            .strip_prefix("interrupted ")
                            .filter(|_| e.status == "running")
                    }) {
                        println!("      {}", why);
                    }
                }
            }
        }
        ExperimentsCmd::Show { experiment, json } => {
            let e = rt
                .block_on(store.find_experiment(&experiment))?
                .with_context(|| format!("no experiment `{experiment}` in the store"))?;
            let d = rt.block_on(store.experiment_detail(e.id))?;
            let status = shown(&e);
            if json {
                let mut v = serde_json::to_value(&d)?;
                v["experiment"] = with_state(&e, &status)?;
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "experiment {} `{}`: {} on {} (seed {}), {status}",
                    e.id, e.name, e.strategy, e.dataset, e.seed
                );
                if let Some(why) = &e.error {
                    println!("reason: {why}");
                }
                if e.status == "running"
                    && let (Some(pid), Some(h)) = (e.pid, e.host.as_deref())
                {
                    println!(
                        "process {pid} on {h}, last progress {}",
                        e.heartbeat_at.map_or("never".into(), |t| format!(
                            "{} s ago",
                            (now_secs() - t).max(0)
                        ))
                    );
                }
                for (k, v) in crate::report_input::model_rows(&e.config) {
                    println!("{k}: {v}");
                }
                for f in &d.folds {
                    println!(
                        "fold {}: train blocks {}..{}, test {}..{}",
                        f.fold + 1,
                        f.train_from,
                        f.train_to,
                        f.test_from,
                        f.test_to
                    );
                    for r in d.runs.iter().filter(|r| r.fold == f.fold) {
                        println!(
                            "  {:<14} in-sample {:>14.6}  out-of-sample {:>14.6}  {}",
                            r.kind,
                            r.train_objective.unwrap_or(f64::NAN),
                            r.test_objective.unwrap_or(f64::NAN),
                            r.params
                        );
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An experiment row as `--json` shows it: every stored field, `status` as [`shown_status`]
/// gives it and `stored_status` as the store holds it.
fn with_state(e: &dexlab_store::ExperimentRow, status: &str) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(e)?;
    v["stored_status"] = e.status.clone().into();
    v["status"] = status.split(' ').next().unwrap_or(status).into();
    if status != e.status {
        v["state"] = status.into();
    }
    Ok(v)
}

pub fn report_cmd(a: ReportArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let store = crate::ml::store_existing(rt)?;
    let e = rt
        .block_on(store.find_experiment(&a.experiment))?
        .with_context(|| format!("no experiment `{}` in the store", a.experiment))?;
    let d = rt.block_on(store.experiment_detail(e.id))?;
    check_reportable(
        &e,
        &shown_status(&e, &host_name(), &process_alive),
        d.folds.len(),
    )?;
    let input = crate::report_input::build(&d)?;
    let staged = dexlab_data::outdir::Staged::begin(&a.out, a.force, "files")?;
    let files = dexlab_report::write_report(&input, staged.path())?;
    staged.commit()?;
    eprintln!("wrote {} files to {}", files.len(), a.out.display());
    Ok(ExitCode::SUCCESS)
}

/// The fitness pool's size for `--threads requested` on a machine with `available` cores (0 =
/// all of them). More threads than cores only contend for them (a run with `--threads 9999` was
/// 300 times slower), and the result does not depend on the count, so more is capped to the
/// cores, with a warning for stderr.
fn fitness_threads(requested: usize, available: usize) -> (usize, Option<String>) {
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

/// This machine's name, as recorded with the experiments it runs.
pub(crate) fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

/// Whether process `pid` of this machine is alive; `true` where that cannot be told (no
/// `/proc`), so that a live run is never shown as gone.
pub(crate) fn process_alive(pid: i64) -> bool {
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The state `experiments list/show` and `report` give an experiment: its stored status, except
/// that a `running` one whose process is known to be gone (this host, no such pid: killed, or the
/// machine restarted) is shown as interrupted. A process on another host cannot be checked from
/// here; `show` prints when it was last heard from.
fn shown_status(
    e: &dexlab_store::ExperimentRow,
    host: &str,
    alive: &dyn Fn(i64) -> bool,
) -> String {
    match (e.status.as_str(), e.pid, e.host.as_deref()) {
        ("running", Some(pid), Some(h)) if h == host && !alive(pid) => {
            format!("interrupted (process {pid} on {h} is gone)")
        }
        _ => e.status.clone(),
    }
}

/// Refuses to report an experiment with nothing finished to show: a failed one (with its reason),
/// an interrupted one, one still running, or one without folds.
fn check_reportable(
    e: &dexlab_store::ExperimentRow,
    status: &str,
    folds: usize,
) -> anyhow::Result<()> {
    let who = format!("experiment {} `{}`", e.id, e.name);
    let reason = e.error.as_deref().unwrap_or("no reason was recorded");
    if e.status == "failed" {
        bail!("{who} failed: {reason}; there is nothing to report");
    }
    if e.status == "interrupted" || status.starts_with("interrupted") {
        bail!(
            "{who} was {status}{} with {folds} fold(s) stored: rerun its `dexlab evolve` command \
             (same --out) to resume it, then report it",
            e.error
                .as_deref()
                .map_or(String::new(), |r| format!(" ({r})"))
        );
    }
    if e.status == "running" {
        if folds == 0 {
            bail!("{who} is still running and no fold has finished yet: nothing to report");
        }
        bail!("{who} is still running ({folds} fold(s) stored so far): report it when it is done");
    }
    if e.status != "done" {
        bail!(
            "{who} has status `{}`: only finished experiments are reported",
            e.status
        );
    }
    if folds == 0 {
        bail!("{who} is done but stored no folds: nothing to report");
    }
    Ok(())
}

/// `--params`: a JSON object of overrides, inline or `@FILE`; anything else is refused here,
/// naming the flag or the file.
fn parse_overrides(text: &str) -> anyhow::Result<serde_json::Value> {
    let (v, origin): (serde_json::Value, String) = match text.strip_prefix('@') {
        Some(file) => (
            serde_json::from_str(
                &std::fs::read_to_string(file)
                    .with_context(|| format!("--params: reading {file}"))?,
            )
            .with_context(|| format!("--params {file}: not JSON"))?,
            format!("--params {file}"),
        ),
        None => (
            serde_json::from_str(text).context("--params: not JSON")?,
            "--params".to_owned(),
        ),
    };
    if !v.is_object() {
        bail!(
            "{origin}: must be a JSON object of parameter overrides, '{{\"NAME\": VALUE, …}}' \
             (`{{}}` keeps every default; `dexlab strategies list` shows each strategy's \
             parameters), got {v}"
        );
    }
    Ok(v)
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

    fn row(status: &str, error: Option<&str>) -> dexlab_store::ExperimentRow {
        dexlab_store::ExperimentRow {
            id: 7,
            name: "arb".into(),
            strategy: "cross-venue-arb".into(),
            dataset: "ds".into(),
            dataset_hash: "h".into(),
            config: serde_json::json!({}),
            seed: 1,
            status: status.into(),
            summary: None,
            created_at: 0,
            error: error.map(Into::into),
            pid: Some(4242),
            host: Some("lab-1".into()),
            heartbeat_at: Some(100),
        }
    }

    /// A `running` experiment whose process is gone (same host, no such pid) is not shown as live.
    #[test]
    fn a_running_experiment_of_a_dead_process_is_shown_interrupted() {
        let e = row("running", None);
        assert_eq!(shown_status(&e, "lab-1", &|_| true), "running");
        let s = shown_status(&e, "lab-1", &|_| false);
        assert!(s.starts_with("interrupted"), "{s}");
        assert!(s.contains("4242"), "{s}");
        // Another host's process cannot be checked from here: shown as running.
        assert_eq!(shown_status(&e, "lab-2", &|_| false), "running");
        assert_eq!(
            shown_status(&row("done", None), "lab-1", &|_| false),
            "done"
        );
    }

    /// `report` on a failed, interrupted or still empty experiment says so and fails instead of
    /// drawing empty plots.
    #[test]
    fn only_finished_experiments_are_reported() {
        let e = check_reportable(&row("failed", Some("2 blocks with events")), "failed", 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("experiment 7 `arb` failed"), "{e}");
        assert!(e.contains("2 blocks with events"), "{e}");
        let e = check_reportable(&row("running", None), "running", 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("still running") && e.contains("no fold"), "{e}");
        let e = check_reportable(
            &row("running", None),
            "interrupted (process 4242 on lab-1 is gone)",
            1,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("interrupted"), "{e}");
        check_reportable(&row("done", None), "done", 2).unwrap();
    }

    /// `--params` that is not a JSON object is refused, naming the flag (or the file).
    #[test]
    fn params_that_are_not_an_object_are_refused_with_the_flag() {
        for bad in ["[1,2,3]", "5", "null", "\"min_profit_bps\"", "true"] {
            let e = parse_overrides(bad).map(|v| registry::parse_params("cross-venue-arb", &v));
            let text = match e {
                Err(e) => format!("{e:#}"),
                Ok(Err(e)) => format!("{e:#}"),
                Ok(Ok(p)) => panic!("{bad} accepted as {p}"),
            };
            assert!(text.contains("--params"), "{bad}: {text}");
            assert!(text.contains("JSON object"), "{bad}: {text}");
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        std::fs::write(&f, "[1]").unwrap();
        let e = format!(
            "{:#}",
            parse_overrides(&format!("@{}", f.display())).unwrap_err()
        );
        assert!(e.contains("p.json") && e.contains("JSON object"), "{e}");
        assert!(
            parse_overrides("{\"min_profit_bps\": 2}")
                .unwrap()
                .is_object()
        );
    }
}
