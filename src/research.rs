//! Research commands: strategies, backtest, evolve, experiments, report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use dexlab_evolve::config::ExperimentConfig;
use dexlab_lab::evolve::{EvolveRequest, Experiment};
use dexlab_lab::experiments::{now_secs, state_json};
use dexlab_lab::{Access, Event, open_store};
use dexlab_strategy::registry;
use dexlab_types::{ExperimentStatus, RunKind};
use indicatif::{ProgressBar, ProgressStyle};

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
    /// Compute fitness on the workers (`dexlab worker`) of this NATS JetStream server instead of
    /// here (e.g. nats://127.0.0.1:4222); the experiment is the same bit for bit.
    #[arg(long, value_name = "URL", env = "DEXLAB_NATS")]
    nats: Option<String>,
    /// With --nats: give up when no result has come for this many seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS", requires = "nats")]
    nats_stall_secs: u64,
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

fn load_config(path: Option<&Path>) -> anyhow::Result<ExperimentConfig> {
    Ok(match path {
        Some(p) => ExperimentConfig::load(p)?,
        None => ExperimentConfig::default(),
    })
}

/// Whether the dashboard's job runner launched us (`DEXLAB_JOB=1`).
pub(crate) fn in_job() -> bool {
    std::env::var_os("DEXLAB_JOB").is_some_and(|v| v == "1")
}

/// The lab's progress events on stderr: notes as they are, warnings prefixed, generations on a
/// progress bar (hidden when `quiet` or stderr is not a terminal). Under the job runner,
/// generations are `dexlab-progress {"done", "total", "note"}` lines for it to read instead.
pub(crate) struct Stderr {
    bar: ProgressBar,
    job: bool,
}

impl Stderr {
    pub(crate) fn new(quiet: bool, template: &str) -> Self {
        let job = in_job();
        let bar = if quiet || job || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0)
        };
        bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
        Stderr { bar, job }
    }

    fn report(&self) {
        if self.job {
            let line = serde_json::json!({
                "done": self.bar.position(),
                "total": self.bar.length().unwrap_or(0),
                "note": self.bar.message(),
            });
            eprintln!("{}{line}", dexlab_server::jobs::PROGRESS_PREFIX);
        }
    }
}

impl dexlab_lab::Progress for Stderr {
    fn event(&mut self, e: Event<'_>) {
        match e {
            Event::Note(n) => self.bar.suspend(|| eprintln!("{n}")),
            Event::Warning(w) => self.bar.suspend(|| eprintln!("warning: {w}")),
            Event::Started { total } => {
                self.bar.set_length(total);
                self.report();
            }
            Event::Generation {
                fold,
                position,
                best,
            } => {
                self.bar.set_position(position);
                self.bar.set_message(format!(
                    "fold {} best {}",
                    fold + 1,
                    best.map_or("(none feasible)".into(), |b| format!("{b:.6}"))
                ));
                self.report();
            }
            Event::Finished => self.bar.finish_and_clear(),
            _ => {}
        }
    }
}

pub fn backtest_cmd(a: BacktestArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(a.config.as_deref())?;
    let overrides = parse_overrides(&a.params)?;
    let params = registry::parse_params(&a.strategy, &overrides).context("--params")?;
    let req = dexlab_lab::backtest::BacktestRequest {
        data: a.data.clone(),
        strategy: a.strategy.clone(),
        params,
        config: cfg,
        seed: a.seed,
        model: a.model.clone(),
    };
    let o = dexlab_lab::backtest::run(&req, &mut Stderr::new(true, "{msg}"))?;
    let r = &o.result;
    if a.json {
        let out = serde_json::json!({
            "strategy": a.strategy,
            "params": o.params,
            "dataset_hash": o.dataset_hash,
            "blocks": o.blocks,
            "model_window": o.model_window,
            "metrics": r.metrics,
            "trades": r.trades,
            "equity": r.equity,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let m = &r.metrics;
        println!(
            "{} over {} blocks in {:.2}s with {}",
            a.strategy, o.blocks, o.seconds, req.params
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
    let quote = cfg.backtest.quote.clone();
    let objective = cfg.ga.objective;
    let req = EvolveRequest {
        data: a.data.clone(),
        strategy: a.strategy.clone(),
        config: cfg,
        config_source: a
            .config
            .as_deref()
            .map_or("default config".into(), |p| p.display().to_string()),
        seed: a.seed,
        model: a.model.clone(),
        threads: a.threads,
        name: a.name.clone(),
        out: a.out.clone(),
        force: a.force,
    };
    // Refused before the store is opened (or created).
    req.check()?;
    let store = rt.block_on(open_store(Access::Write))?;
    let mut progress = Stderr::new(a.quiet, "{bar:30} {pos}/{len} generations {elapsed} {msg}");
    let experiment = Experiment::open(req, &store, rt.handle(), &mut progress)?;
    let id = experiment.id();
    // Ctrl-C or SIGTERM: the experiment is left `interrupted` with the reason, not `running`.
    let on_signal = rt.spawn({
        let store = store.clone();
        async move {
            let Some(i) = dexlab_lab::evolve::interrupt_on_signal(store, id).await else {
                return;
            };
            if i.marked {
                eprintln!("experiment {id} interrupted: {}", i.reason);
            } else {
                eprintln!(
                    "experiment {id} stopped by {}; it could not be marked interrupted in the \
                     store",
                    i.signal
                );
            }
            std::process::exit(i32::from(i.exit_code));
        }
    });
    let remote = match &a.nats {
        Some(url) => {
            let queue = rt.block_on(dexlab_queue::Queue::connect(url))?;
            let remote = rt.block_on(dexlab_lab::distributed::NatsEval::new(
                queue,
                &a.data,
                a.model.as_deref(),
                std::time::Duration::from_secs(a.nats_stall_secs.max(1)),
            ))?;
            if !a.quiet {
                eprintln!(
                    "fitness on the workers of {} (dataset bundle {})",
                    dexlab_queue::scrub_url(url),
                    remote.dataset_bundle()
                );
            }
            Some(remote)
        }
        None => None,
    };
    let outcome = experiment.run_with(
        &store,
        rt.handle(),
        &mut progress,
        remote
            .as_ref()
            .map(|r| r as &dyn dexlab_lab::evolve::Remote),
    );
    on_signal.abort();
    let o = outcome?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&o.summary)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "experiment {} `{}`: {} folds, objective {}, {:.1}s on {} threads",
        o.experiment_id,
        o.name,
        o.folds.len(),
        objective.label(&quote),
        o.seconds,
        o.threads
    );
    println!(
        "{:<5} {:>14} {:>14} {:>14} {:>14} {:>14}",
        "fold", "GA in-sample", "GA out", "random out", "default out", "no-trade out"
    );
    for f in &o.folds {
        let out = |k: RunKind| f.run(k).map_or(f64::NAN, |r| r.test_objective);
        let ga_is = f.run(RunKind::Ga).map_or(f64::NAN, |r| r.train_objective);
        println!(
            "{:<5} {:>14.6} {:>14.6} {:>14.6} {:>14.6} {:>14.6}",
            f.fold + 1,
            ga_is,
            out(RunKind::Ga),
            out(RunKind::RandomSearch),
            out(RunKind::Default),
            out(RunKind::NoTrade)
        );
    }
    let summary = &o.summary;
    if let Some(q) = summary["queue_assumption"].as_str() {
        println!("assumption: {q}");
    }
    let errors: u64 = RunKind::ALL
        .iter()
        .filter_map(|k| summary["runs"][k.as_str()]["errors"].as_u64())
        .sum();
    if errors > 0 {
        eprintln!(
            "warning: {errors} error(s) in the reported runs; their figures are not to be \
             trusted. First: {}",
            RunKind::ALL
                .iter()
                .find_map(|k| summary["runs"][k.as_str()]["first_error"].as_str())
                .unwrap_or("?")
        );
    }
    println!(
        "results: {}; store: {}; report: dexlab report {} --out DIR",
        o.result_path.display(),
        store.backend(),
        o.experiment_id
    );
    Ok(ExitCode::SUCCESS)
}

pub fn experiments_cmd(
    c: ExperimentsCmd,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<ExitCode> {
    let store = rt.block_on(open_store(Access::Read))?;
    match c {
        ExperimentsCmd::List { json } => {
            let list = rt.block_on(dexlab_lab::experiments::list(&store))?;
            if json {
                let rows: Vec<serde_json::Value> = list
                    .iter()
                    .map(|e| state_json(&e.row, &e.shown))
                    .collect::<Result<_, _>>()?;
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:>4}  {:<32} {:<18} {:<11} {:>6}  dataset",
                    "id", "name", "strategy", "status", "seed"
                );
                for l in list {
                    let e = &l.row;
                    println!(
                        "{:>4}  {:<32} {:<18} {:<11} {:>6}  {} ({})",
                        e.id,
                        e.name,
                        e.strategy,
                        l.shown.status.as_str(),
                        e.seed,
                        e.dataset,
                        dexlab_lab::short(&e.dataset_hash)
                    );
                    let gone = l
                        .shown
                        .detail
                        .as_ref()
                        .filter(|_| e.status == ExperimentStatus::Running)
                        .map(|d| format!("({d})"));
                    if let Some(why) = e.error.clone().or(gone) {
                        println!("      {why}");
                    }
                }
            }
        }
        ExperimentsCmd::Show { experiment, json } => {
            let s = rt.block_on(dexlab_lab::experiments::show(&store, &experiment))?;
            let d = &s.detail;
            let e = &d.experiment;
            if json {
                let mut v = serde_json::to_value(d)?;
                v["experiment"] = state_json(e, &s.shown)?;
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "experiment {} `{}`: {} on {} (seed {}), {}",
                    e.id, e.name, e.strategy, e.dataset, e.seed, s.shown
                );
                if let Some(why) = &e.error {
                    println!("reason: {why}");
                }
                if e.status == ExperimentStatus::Running
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
                for (k, v) in dexlab_lab::report::model_rows(&e.config) {
                    println!("{k}: {v}");
                }
                if let Some(w) = e
                    .summary
                    .as_ref()
                    .and_then(|s| s["distributed"]["workers"].as_object())
                {
                    let list: Vec<String> = w.iter().map(|(id, n)| format!("{id} ({n})")).collect();
                    println!(
                        "fitness on the workers of {}: {}",
                        e.summary.as_ref().expect("read above")["distributed"]["nats"]
                            .as_str()
                            .unwrap_or("?"),
                        list.join(", ")
                    );
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

pub fn report_cmd(a: ReportArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let store = rt.block_on(open_store(Access::Read))?;
    let input = rt.block_on(dexlab_lab::report::input(&store, &a.experiment))?;
    let staged = dexlab_data::outdir::Staged::begin(&a.out, a.force, "files")?;
    let files = dexlab_report::write_report(&input, staged.path())?;
    staged.commit()?;
    eprintln!("wrote {} files to {}", files.len(), a.out.display());
    Ok(ExitCode::SUCCESS)
}

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
