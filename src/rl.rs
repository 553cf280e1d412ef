//! `dexlab rl train|eval`: DQN and PPO agents trained inside the real backtester, evaluated out of
//! sample next to a random policy, no trading, and `price-reversion` with default and
//! optimiser-tuned parameters on the same blocks (`dexlab_lab::rl`). Argument parsing and
//! printing only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use dexlab_evolve::config::ExperimentConfig;
use dexlab_lab::rl::{EpisodeRow, Evaluation, RlTrainRequest};
use dexlab_lab::{Access, Event, open_store};
use dexlab_models::rl::AgentKind;
use dexlab_models::rl::env::RlConfig;

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

pub fn rl_cmd(cmd: RlCmd, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    match cmd {
        RlCmd::Train(a) => train(a, rt),
        RlCmd::Eval(a) => {
            let evaluation = dexlab_lab::rl::eval(&a.agent_dir, &a.data)?;
            print_eval(&evaluation, a.json, None)?;
            Ok(ExitCode::SUCCESS)
        }
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
    let req = RlTrainRequest {
        data: a.data.clone(),
        agent: kind,
        experiment,
        rl,
        seed: a.seed,
        out: a.out.clone(),
        name: a.name.clone(),
    };
    // Refused before the store is opened (or created).
    req.check()?;
    let store = rt.block_on(open_store(Access::Write))?;
    let json = a.json;
    let o = dexlab_lab::rl::train(&req, &store, rt.handle(), &mut |e: Event<'_>| {
        if let Event::Episode {
            episode,
            reward,
            net_pnl_quote,
            bundles,
            actions,
        } = e
            && !json
        {
            eprintln!(
                "episode {episode}: reward {reward:.2}, net PnL {net_pnl_quote:.4}, {bundles} \
                 bundles, actions {actions:?}"
            );
        }
    })?;
    print_eval(&o.evaluation, a.json, Some((o.train_seconds, &o.curve)))?;
    if !a.json {
        println!(
            "registered as model {} `{}` in the {} store",
            o.registered.id, o.registered.name, o.registered.store
        );
    }
    Ok(ExitCode::SUCCESS)
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
