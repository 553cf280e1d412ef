//! RL agents (DQN, PPO) trained inside the real backtester and evaluated out of sample next to a
//! random policy, no trading, and `price-reversion` with default and optimiser-tuned parameters
//! on the same blocks; registered in the model registry like predictive models.
//!
//! The dataset's blocks are split once: the first `1 - test_fraction` train (observation
//! statistics, episodes, the heuristic's tuning), the rest test. The agent directory records the
//! split and the dataset hash ([`AgentEnv`], `env.json`), so an evaluation on the same data
//! evaluates on the same blocks.

use std::ops::Range;
use std::path::{Path, PathBuf};

use dexlab_data::outdir::{self, OutputLock};
use dexlab_evolve::backtest::{self, BacktestResult, ExecConfig};
use dexlab_evolve::config::ExperimentConfig;
use dexlab_evolve::metrics::Metrics;
use dexlab_evolve::optimise::{EvalCtx, Evaluator, GaState, optimise};
use dexlab_evolve::tape::Tape;
use dexlab_models::rl::env::{
    AgentStrategy, Episode, EpisodeStats, Mode, RlConfig, StatsCollector, plan,
};
use dexlab_models::rl::{Agent, AgentKind, AgentStats, new_agent};
use dexlab_store::{NewModel, RegisteredTask, Store};
use dexlab_strategy::market::Market;
use dexlab_strategy::registry;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use crate::agent::{AgentEnv, ENV_FILE, load_agent};
use crate::error::{Context, LabError, Result, refuse};
use crate::progress::{Event, Progress};
use crate::train::Registered;

/// An RL training as asked for, its configs loaded and validated (`RlConfig::validate`).
#[derive(Debug, Clone)]
pub struct RlTrainRequest {
    /// Dataset folder.
    pub data: PathBuf,
    pub agent: AgentKind,
    /// Its `backtest` (capital, gas, competition) and `ga` (tuning of the heuristic baseline).
    pub experiment: ExperimentConfig,
    pub rl: RlConfig,
    pub seed: u64,
    /// Agent directory (default: `agents/AGENT-seedN`).
    pub out: Option<PathBuf>,
    /// Registry name (default: the directory's name).
    pub name: Option<String>,
}

impl RlTrainRequest {
    /// What can be refused before anything is opened: the GA that tunes the heuristic baseline
    /// (its operators must fit that strategy's genome, checked before training rather than
    /// after) and the registry name. Returns the name and the agent directory. [`train`] checks
    /// it again.
    pub fn check(&self) -> Result<(String, PathBuf)> {
        let genes = registry::info(dexlab_strategy::reversion::NAME)?
            .params
            .len();
        if let Err(m) = self.experiment.ga.check_genome(genes) {
            refuse!(
                "{m} (the GA tunes the `{}` baseline)",
                dexlab_strategy::reversion::NAME
            );
        }
        let out = self.out.clone().unwrap_or_else(|| {
            PathBuf::from("agents").join(format!("{}-seed{}", self.agent, self.seed))
        });
        let name = match &self.name {
            Some(n) => n.clone(),
            None => out
                .file_name()
                .ok_or_else(|| LabError::Refused("--out has no directory name".into()))?
                .to_string_lossy()
                .into_owned(),
        };
        dexlab_store::validate_model_name(&name)?;
        Ok((name, out))
    }
}

/// One training episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeRow {
    pub episode: usize,
    pub reward: f64,
    pub net_pnl_quote: f64,
    pub bundles: u64,
    pub decisions: u64,
    pub actions: Vec<u64>,
    pub agent: AgentStats,
}

/// One policy or baseline on the held-out blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    /// The agent's kind, `random_policy`, `price_reversion_tuned`, `price_reversion_default` or
    /// `no_trade`.
    pub kind: String,
    pub params: Option<serde_json::Value>,
    pub metrics: Metrics,
    pub episode: Option<EpisodeStats>,
}

/// An agent evaluated out of sample next to the baselines (`eval.json`, and the registry row's
/// metrics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub agent: String,
    pub test_blocks: (u64, u64),
    /// Blocks of the dataset in the test window (blocks without events or header are not in it).
    pub blocks: usize,
    /// Out of sample, on the test blocks.
    pub runs: Vec<EvalRow>,
}

/// A trained, evaluated and registered agent.
#[derive(Debug, Clone)]
pub struct RlTrainOutcome {
    pub evaluation: Evaluation,
    pub curve: Vec<EpisodeRow>,
    pub train_seconds: f64,
    pub registered: Registered,
}

/// Trains an agent on the first part of a dataset, evaluates it on the rest, writes its
/// directory and registers it. Training again under a registered name must reproduce the agent
/// byte for byte, or it is refused and the directory left as it was.
///
/// Blocks on `rt` for the store: call it from outside the runtime's async threads.
pub fn train(
    req: &RlTrainRequest,
    store: &Store,
    rt: &Handle,
    progress: &mut dyn Progress,
) -> Result<RlTrainOutcome> {
    let kind = req.agent;
    let rl = req.rl.clone();
    let experiment = req.experiment.clone();
    let (name, out) = req.check()?;
    // One training per agent directory at a time.
    let _lock = OutputLock::acquire(&out)?;
    // A trained agent there is replaced (the registry refuses other content under its name);
    // anything else is not ours to delete.
    if !out.join(ENV_FILE).is_file() && !outdir::is_empty_or_absent(&out)? {
        refuse!(
            "{} holds files that are not an agent (no env.json): not replacing them; choose \
             another --out",
            out.display()
        );
    }
    let registered = rt.block_on(store.model_by_name_or_id(&name))?;
    let tape = Tape::load(&req.data)?;
    let exec = experiment.backtest.resolve(&tape, req.seed)?;
    let n = tape.blocks.len();
    let n_train = ((1.0 - rl.test_fraction) * n as f64).round() as usize;
    if n_train < 200 || n - n_train < 100 {
        refuse!(
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
    let mut agent = new_agent(&rl.agent(kind), obs_dim, rl.env.n_actions(), req.seed)?;
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
        progress.event(Event::Episode {
            episode,
            reward: row.reward,
            net_pnl_quote: row.net_pnl_quote,
            bundles: row.bundles,
            actions: &row.actions,
        });
        curve.push(row);
    }
    let train_secs = started.elapsed().as_secs_f64();
    let block_of = |i: usize| tape.blocks[i].number;
    let env_file = AgentEnv {
        dexlab_version: env!("CARGO_PKG_VERSION").into(),
        kind,
        seed: req.seed,
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
    write_json(&tmp.join(ENV_FILE), &env_file)?;
    write_json(&tmp.join("curve.json"), &curve)?;
    let evaluation = evaluate(&tape, &env_file, agent.as_mut(), &out, &exec)?;
    write_json(&tmp.join("eval.json"), &evaluation)?;
    let content_hash = dexlab_store::content_hash(&tmp)?;
    if let Some(r) = &registered
        && r.model.content_hash != content_hash
    {
        let _ = std::fs::remove_dir_all(&tmp);
        refuse!(
            "`{name}` is already registered (model {}, {}) with other content; this training was \
             not kept and the directory was left as it was (use another --name and --out)",
            r.id,
            r.model.dir
        );
    }
    if out.exists() {
        std::fs::remove_dir_all(&out)
            .map_err(|e| LabError::io(&out, e))
            .with_context(|| format!("replacing {}", out.display()))?;
    }
    std::fs::rename(&tmp, &out)
        .map_err(|e| LabError::io(&tmp, e))
        .with_context(|| format!("writing {}", out.display()))?;
    let dir = std::path::absolute(&out)
        .map_err(|e| LabError::io(&out, e))?
        .display()
        .to_string();
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
    Ok(RlTrainOutcome {
        evaluation,
        curve,
        train_seconds: train_secs,
        registered: Registered {
            id,
            name,
            dir,
            content_hash: row.content_hash,
            store: store.backend(),
            new: registered.is_none(),
        },
    })
}

/// Evaluates the agent in `agent_dir` on its held-out blocks of `data` (the dataset it was
/// trained on), next to the baselines.
pub fn eval(agent_dir: &Path, data: &Path) -> Result<Evaluation> {
    let mut loaded = load_agent(agent_dir)?;
    let tape = Tape::load(data)?;
    let env = &loaded.env;
    if tape.dataset_hash != env.dataset_hash {
        refuse!(
            "{} is not the dataset agent {} was trained on (hash {} vs {}): its train/test split \
             would not hold",
            data.display(),
            agent_dir.display(),
            tape.dataset_hash,
            env.dataset_hash
        );
    }
    let exec = env.experiment.backtest.resolve(&tape, env.seed)?;
    evaluate(&tape, &loaded.env, loaded.agent.as_mut(), agent_dir, &exec)
}

/// The agent's greedy policy, a random policy, no trading, and price-reversion with default and
/// tuned parameters, all on the test blocks.
fn evaluate(
    tape: &Tape,
    f: &AgentEnv,
    agent: &mut dyn Agent,
    dir: &Path,
    exec: &ExecConfig,
) -> Result<Evaluation> {
    let test_start = tape.market_at(f.test.start);
    let end = f.test_blocks.1;
    let mut runs = Vec::new();
    let agent_run = |mode: Mode, name: &str, agent: &mut dyn Agent| -> Result<EvalRow> {
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
     -> Result<BacktestResult> {
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
            .ok_or_else(|| LabError::Refused("the optimiser evaluated nothing".into()))?
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
    f: &AgentEnv,
    columns: &[String],
    curve: &[EpisodeRow],
    evaluation: &Evaluation,
    train_seconds: f64,
) -> Result<NewModel> {
    Ok(NewModel {
        name: name.to_owned(),
        kind: f.kind.into(),
        task: RegisteredTask::Rl,
        target: "equity change (bps of capital)".into(),
        dir: dir.to_owned(),
        content_hash,
        features: columns.to_vec(),
        window: u32::try_from(f.rl.env.window)
            .map_err(|_| LabError::Refused(format!("window {} is too long", f.rl.env.window)))?,
        seed: f.seed,
        backend: "flex".into(),
        dataset_hash: Some(f.dataset_hash.clone()),
        git_commit: dexlab_models::artifact::git_commit(),
        config: serde_json::to_value(&f.rl).map_err(|e| LabError::json("RL config", e))?,
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
        metrics: serde_json::to_value(evaluation).map_err(|e| LabError::json("evaluation", e))?,
        train_seconds: Some(train_seconds),
        created_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    })
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let bytes =
        serde_json::to_vec_pretty(v).map_err(|e| LabError::json(path.display().to_string(), e))?;
    std::fs::write(path, bytes)
        .map_err(|e| LabError::io(path, e))
        .with_context(|| format!("writing {}", path.display()))
}
