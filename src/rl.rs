//! `dexlab rl train|eval`: DQN and PPO agents trained inside the real backtester, evaluated out of
//! sample next to a random policy, no trading, and `price-reversion` with default and
//! optimiser-tuned parameters on the same blocks.
//!
//! The dataset's blocks are split once: the first `1 - test_fraction` train (observation
//! statistics, episodes, the heuristic's tuning), the rest test. The agent directory records the
//! split and the dataset hash, so `dexlab rl eval` on the same data evaluates on the same blocks.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use dexlab_evolve::backtest::{self, BacktestResult, ExecConfig};
use dexlab_evolve::config::ExperimentConfig;
use dexlab_evolve::metrics::Metrics;
use dexlab_evolve::optimise::{EvalCtx, Evaluator, GaState, optimise};
use dexlab_evolve::tape::Tape;
use dexlab_models::rl::env::{
    AgentStrategy, Episode, EpisodeStats, Mode, ObsStats, RlConfig, StatsCollector, plan,
};
use dexlab_models::rl::{AgentKind, AgentStats, load_agent, new_agent};
use dexlab_store::NewModel;
use dexlab_strategy::market::Market;
use dexlab_strategy::registry;
use serde::{Deserialize, Serialize};

#[derive(Subcommand)]
pub enum RlCmd {
    /// Train a DQN or PPO agent on the first part of a dataset, then evaluate it on the rest.
    Train(RlTrainArgs),
    /// Evaluate a trained agent on its held-out blocks, next to the baselines.
    Eval(RlEvalArgs),
}

#[derive(Args)]
pub struct RlTrainArgs {
    /// Dataset folder.
    #[arg(long)]
    data: PathBuf,
    /// dqn | ppo
    #[arg(long)]
    agent: String,
    /// Experiment TOML: its `[backtest]` (capital, gas, competition) and `[ga]` (tuning of the
    /// heuristic baseline) tables.
    #[arg(long)]
    config: Option<PathBuf>,
    /// RL TOML: `[env]`, `[dqn]`, `[ppo]`, `episodes`, `test_fraction`.
    #[arg(long)]
    rl_config: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Training episodes (passes over the training blocks); overrides the RL TOML.
    #[arg(long)]
    episodes: Option<usize>,
    /// Agent directory (default: agents/AGENT-seedN).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Name in the model registry (default: the directory's name). Training again under a
    /// registered name must reproduce the agent byte for byte.
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RlEvalArgs {
    /// Agent directory written by `dexlab rl train`.
    agent_dir: PathBuf,
    /// Dataset folder (the one the agent was trained on).
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    json: bool,
}

/// What `rl train` writes next to the agent's networks (`env.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EnvFile {
    dexlab_version: String,
    kind: AgentKind,
    seed: u64,
    dataset_hash: String,
    experiment: ExperimentConfig,
    rl: RlConfig,
    pool: String,
    stats: ObsStats,
    /// Block indices of the tape.
    train: Range<usize>,
    test: Range<usize>,
    train_blocks: (u64, u64),
    test_blocks: (u64, u64),
}

#[derive(Debug, Clone, Serialize)]
struct EpisodeRow {
    episode: usize,
    reward: f64,
    net_pnl_quote: f64,
    bundles: u64,
    decisions: u64,
    actions: Vec<u64>,
    agent: AgentStats,
}

#[derive(Debug, Clone, Serialize)]
struct EvalRow {
    kind: String,
    params: Option<serde_json::Value>,
    metrics: Metrics,
    episode: Option<EpisodeStats>,
}

#[derive(Debug, Clone, Serialize)]
struct Evaluation {
    agent: String,
    test_blocks: (u64, u64),
    /// Blocks of the dataset in the test window (blocks without events or header are not in it).
    blocks: usize,
    /// Out of sample, on the test blocks.
    runs: Vec<EvalRow>,
}

pub fn rl_cmd(cmd: RlCmd, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    match cmd {
        RlCmd::Train(a) => train(a, rt),
        RlCmd::Eval(a) => eval_cmd(a),
    }
}

fn train(a: RlTrainArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let kind: AgentKind = a.agent.parse()?;
    let experiment = match &a.config {
        Some(p) => ExperimentConfig::load(p)?,
        None => ExperimentConfig::default(),
    };
    let mut rl = match &a.rl_config {
        Some(p) => RlConfig::load(p)?,
        None => RlConfig::default(),
    };
    if let Some(e) = a.episodes {
        rl.episodes = e;
    }
    rl.validate("--episodes")?;
    // The price-reversion baseline is tuned with the experiment's GA: its operators must fit
    // that strategy's genome, checked before training rather than after.
    let genes = registry::info(dexlab_strategy::reversion::NAME)?
        .params
        .len();
    experiment.ga.check_genome(genes).map_err(|m| {
        anyhow::anyhow!(
            "{m} (the GA tunes the `{}` baseline)",
            dexlab_strategy::reversion::NAME
        )
    })?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("agents").join(format!("{kind}-seed{}", a.seed)));
    let name = match &a.name {
        Some(n) => n.clone(),
        None => out
            .file_name()
            .context("--out has no directory name")?
            .to_string_lossy()
            .into_owned(),
    };
    dexlab_store::validate_model_name(&name)?;
    // One training per agent directory at a time.
    let _lock = dexlab_data::outdir::OutputLock::acquire(&out)?;
    // A trained agent there is replaced (the registry refuses other content under its name);
    // anything else is not ours to delete.
    if !out.join("env.json").is_file() && !dexlab_data::outdir::is_empty_or_absent(&out)? {
        bail!(
            "{} holds files that are not an agent (no env.json): not replacing them; choose \
             another --out",
            out.display()
        );
    }
    let store = crate::ml::store(rt)?;
    let registered = rt.block_on(store.model_by_name_or_id(&name))?;
    let tape = Tape::load(&a.data)?;
    let exec = experiment.backtest.resolve(&tape, a.seed)?;
    let n = tape.blocks.len();
    let n_train = ((1.0 - rl.test_fraction) * n as f64).round() as usize;
    if n_train < 200 || n - n_train < 100 {
        bail!(
            "{n} blocks: too few to train on {n_train} and test on {} (need 200 and 100)",
            n - n_train
        );
    }
    let (train_w, test_w) = (0..n_train, n_train..n);
    let start = tape.market();
    let (pool, columns) = plan(&start, &exec.env, &rl.env)?;
    let mut collector = StatsCollector::new(&start, &columns)?;
    backtest::run(&tape, &start, train_w.clone(), &mut collector, &exec, false);
    let stats = collector.finish()?;
    let obs_dim = AgentStrategy::obs_dim(columns.len(), rl.env.window);
    let mut agent = new_agent(&rl.agent(kind), obs_dim, rl.env.n_actions(), a.seed)?;
    let end_train = tape.blocks[n_train - 1].number;
    let mut curve = Vec::with_capacity(rl.episodes);
    let started = std::time::Instant::now();
    for episode in 0..rl.episodes {
        let (r, ep) = {
            let mut s = AgentStrategy::new(
                agent.as_mut(),
                Mode::Train,
                &start,
                Episode {
                    env: &exec.env,
                    cfg: &rl.env,
                    stats: &stats,
                    capital: exec.capital,
                    end_block: end_train,
                },
            )?;
            let r = backtest::run(&tape, &start, train_w.clone(), &mut s, &exec, false);
            if let Some(e) = s.error.take() {
                return Err(e).with_context(|| format!("episode {episode}"));
            }
            (r, s.episode.clone())
        };
        let row = EpisodeRow {
            episode,
            reward: ep.reward,
            net_pnl_quote: r.metrics.net_pnl_quote,
            bundles: ep.bundles,
            decisions: ep.decisions,
            actions: ep.actions,
            agent: agent.stats(),
        };
        if !a.json {
            eprintln!(
                "episode {episode}: reward {:.2}, net PnL {:.4}, {} bundles, actions {:?}",
                row.reward, row.net_pnl_quote, row.bundles, row.actions
            );
        }
        curve.push(row);
    }
    let train_secs = started.elapsed().as_secs_f64();
    let block_of = |i: usize| tape.blocks[i].number;
    let env_file = EnvFile {
        dexlab_version: env!("CARGO_PKG_VERSION").into(),
        kind,
        seed: a.seed,
        dataset_hash: tape.dataset_hash.clone(),
        experiment,
        rl,
        pool: start.pools[pool].label(),
        stats,
        train: train_w.clone(),
        test: test_w.clone(),
        train_blocks: (block_of(0), block_of(n_train - 1)),
        test_blocks: (block_of(n_train), block_of(n - 1)),
    };
    // Written under a temporary name and renamed when complete, like model directories.
    let tmp = out.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    agent.save(&tmp)?;
    write_json(&tmp.join("env.json"), &env_file)?;
    write_json(&tmp.join("curve.json"), &curve)?;
    let evaluation = evaluate(&tape, &env_file, agent.as_mut(), &out, &exec)?;
    write_json(&tmp.join("eval.json"), &evaluation)?;
    let content_hash = dexlab_store::content_hash(&tmp)?;
    if let Some(r) = &registered
        && r.model.content_hash != content_hash
    {
        let _ = std::fs::remove_dir_all(&tmp);
        bail!(
            "`{name}` is already registered (model {}, {}) with other content; this training was \
             not kept and the directory was left as it was (use another --name and --out)",
            r.id,
            r.model.dir
        );
    }
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("replacing {}", out.display()))?;
    }
    std::fs::rename(&tmp, &out).with_context(|| format!("writing {}", out.display()))?;
    let dir = std::path::absolute(&out)?.display().to_string();
    let row = registry_row(
        &name,
        &dir,
        content_hash,
        &env_file,
        &columns,
        &curve,
        &evaluation,
        train_secs,
    )?;
    let id = rt.block_on(store.register_model(&row))?;
    print_eval(&evaluation, a.json, Some((train_secs, &curve)))?;
    if !a.json {
        println!(
            "registered as model {id} `{name}` in the {} store",
            store.backend()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn eval_cmd(a: RlEvalArgs) -> anyhow::Result<ExitCode> {
    let env_file: EnvFile = read_json(&a.agent_dir.join("env.json"))?;
    let tape = Tape::load(&a.data)?;
    if tape.dataset_hash != env_file.dataset_hash {
        bail!(
            "{} is not the dataset agent {} was trained on (hash {} vs {}): its train/test split would not hold",
            a.data.display(),
            a.agent_dir.display(),
            tape.dataset_hash,
            env_file.dataset_hash
        );
    }
    let exec = env_file.experiment.backtest.resolve(&tape, env_file.seed)?;
    let mut agent = load_agent(&a.agent_dir)?;
    let evaluation = evaluate(&tape, &env_file, agent.as_mut(), &a.agent_dir, &exec)?;
    print_eval(&evaluation, a.json, None)?;
    Ok(ExitCode::SUCCESS)
}

/// The agent's greedy policy, a random policy, no trading, and price-reversion with default and
/// tuned parameters, all on the test blocks.
fn evaluate(
    tape: &Tape,
    f: &EnvFile,
    agent: &mut dyn dexlab_models::rl::Agent,
    dir: &Path,
    exec: &ExecConfig,
) -> anyhow::Result<Evaluation> {
    let test_start = tape.market_at(f.test.start);
    let end = f.test_blocks.1;
    let mut runs = Vec::new();
    let agent_run = |mode: Mode,
                     name: &str,
                     agent: &mut dyn dexlab_models::rl::Agent|
     -> anyhow::Result<EvalRow> {
        let mut s = AgentStrategy::new(
            agent,
            mode,
            &test_start,
            Episode {
                env: &exec.env,
                cfg: &f.rl.env,
                stats: &f.stats,
                capital: exec.capital,
                end_block: end,
            },
        )?;
        let r = backtest::run(tape, &test_start, f.test.clone(), &mut s, exec, false);
        if let Some(e) = s.error.take() {
            return Err(e).context(name.to_owned());
        }
        Ok(EvalRow {
            kind: name.into(),
            params: None,
            metrics: r.metrics,
            episode: Some(s.episode.clone()),
        })
    };
    runs.push(agent_run(Mode::Greedy, f.kind.as_str(), &mut *agent)?);
    runs.push(agent_run(
        Mode::Random(f.seed),
        "random_policy",
        &mut *agent,
    )?);

    let heuristic = dexlab_strategy::reversion::NAME;
    let space = registry::info(heuristic)?.params;
    let run_params = |params: &dexlab_strategy::Params,
                      start: &Market,
                      w: Range<usize>|
     -> anyhow::Result<BacktestResult> {
        let mut s = registry::build(heuristic, start, &exec.env, params)?;
        Ok(backtest::run(tape, start, w, s.as_mut(), exec, false))
    };
    // The heuristic tuned by the genetic optimiser on the agent's training blocks.
    let train_start = tape.market_at(f.train.start);
    let ga = &f.experiment.ga;
    let ctx = EvalCtx {
        tape,
        start: &train_start,
        from: f.train.start,
        window: f.train.clone(),
        strategy: heuristic,
        space: &space,
        exec,
        objective: ga.objective,
        min_trades: ga.min_trades,
        max_drawdown: ga.max_drawdown,
    };
    let ev = Evaluator::new(&ctx);
    let mut state = GaState::new(&space, ga, f.seed, 0);
    optimise(&ev, ga, f.seed, 0, &mut state, &mut |_, _| {})
        .context("tuning the price-reversion baseline")?;
    let tuned = space.decode(
        &state
            .best
            .as_ref()
            .context("the optimiser evaluated nothing")?
            .0,
    );
    for (kind, params) in [
        ("price_reversion_tuned", tuned),
        ("price_reversion_default", space.defaults()),
    ] {
        let r = run_params(&params, &test_start, f.test.clone())?;
        runs.push(EvalRow {
            kind: kind.into(),
            params: Some(params.to_json(&space)),
            metrics: r.metrics,
            episode: None,
        });
    }
    let mut none = registry::build(
        registry::NO_TRADE,
        &test_start,
        &exec.env,
        &space.defaults(),
    )?;
    let r = backtest::run(
        tape,
        &test_start,
        f.test.clone(),
        none.as_mut(),
        exec,
        false,
    );
    runs.push(EvalRow {
        kind: "no_trade".into(),
        params: None,
        metrics: r.metrics,
        episode: None,
    });
    Ok(Evaluation {
        agent: dir.display().to_string(),
        test_blocks: f.test_blocks,
        blocks: f.test.len(),
        runs,
    })
}

/// The agent's row in the model registry: `task` is `rl`, `metrics` the evaluation on the held-out
/// blocks (every run next to the agent's).
#[allow(clippy::too_many_arguments)]
fn registry_row(
    name: &str,
    dir: &str,
    content_hash: String,
    f: &EnvFile,
    columns: &[String],
    curve: &[EpisodeRow],
    evaluation: &Evaluation,
    train_seconds: f64,
) -> anyhow::Result<NewModel> {
    Ok(NewModel {
        name: name.to_owned(),
        kind: f.kind.as_str().to_owned(),
        task: "rl".into(),
        target: "equity change (bps of capital)".into(),
        dir: dir.to_owned(),
        content_hash,
        features: columns.to_vec(),
        window: u32::try_from(f.rl.env.window).context("window")?,
        seed: f.seed,
        backend: "flex".into(),
        dataset_hash: Some(f.dataset_hash.clone()),
        git_commit: dexlab_models::artifact::git_commit(),
        config: serde_json::to_value(&f.rl)?,
        dataset: serde_json::json!({
            "pool": f.pool,
            "train_blocks": f.train_blocks,
            "test_blocks": f.test_blocks,
        }),
        training: serde_json::json!({
            "episodes": curve.len(),
            "first_episode_reward": curve.first().map(|c| c.reward),
            "last_episode_reward": curve.last().map(|c| c.reward),
        }),
        metrics: serde_json::to_value(evaluation)?,
        train_seconds: Some(train_seconds),
        created_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    })
}

fn print_eval(
    e: &Evaluation,
    json: bool,
    training: Option<(f64, &[EpisodeRow])>,
) -> anyhow::Result<()> {
    if json {
        let mut v = serde_json::to_value(e)?;
        if let Some((secs, curve)) = training {
            v["train_seconds"] = secs.into();
            v["curve"] = serde_json::to_value(curve)?;
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if let Some((secs, curve)) = training {
        println!("trained {} episodes in {secs:.1}s", curve.len());
    }
    println!(
        "out of sample, blocks {}..={}:",
        e.test_blocks.0, e.test_blocks.1
    );
    println!(
        "  {:<26} {:>14} {:>9} {:>8} {:>8} {:>12} {:>8} {:>8}",
        "run", "net PnL", "return %", "bundles", "reverts", "gas", "Sharpe", "max DD"
    );
    for r in &e.runs {
        let m = &r.metrics;
        println!(
            "  {:<26} {:>14.4} {:>9.4} {:>8} {:>8} {:>12.4} {:>8.3} {:>8.4}",
            r.kind,
            m.net_pnl_quote,
            m.return_pct,
            m.trades,
            m.reverts,
            m.gas_spent_quote,
            m.sharpe,
            m.max_drawdown
        );
    }
    println!("agent directory: {}", e.agent);
    Ok(())
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(v)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a dexlab rl file", path.display()))
}
