//! `dexlab live`: paper trading on a node, and the replay of a recorded session.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use dexlab_engine::session::{self, SessionMeta};
use dexlab_models::scorer::ModelScorer;
use dexlab_strategy::market::Market;
use dexlab_strategy::{Strategy, TradingEnv, registry};

#[derive(Subcommand)]
pub enum LiveCmd {
    /// Replay a recorded session through the backtester's driver and check that every decision
    /// (same bundles, same block) is the one the session took.
    Replay(ReplayArgs),
}

#[derive(Args)]
pub struct ReplayArgs {
    /// The session folder (`--session` of `dexlab live`).
    pub dir: PathBuf,
    #[arg(long)]
    pub json: bool,
}

/// The strategy of a session, its model loaded and checked against the hash the session
/// recorded.
pub(crate) fn strategy_factory(
    meta: &SessionMeta,
) -> anyhow::Result<(
    Option<dexlab_strategy::ModelHandle>,
    impl FnMut(&Market, &TradingEnv) -> Result<Box<dyn Strategy>, String> + use<>,
)> {
    let params = registry::parse_params(&meta.strategy, &meta.params)
        .with_context(|| format!("the session's parameters of `{}`", meta.strategy))?;
    let model = match &meta.model {
        None => None,
        Some(m) => {
            let scorer = ModelScorer::load(&m.dir)
                .with_context(|| format!("loading the session's model {}", m.dir.display()))?;
            let hash = dexlab_store::content_hash(&m.dir)?;
            if hash != m.hash {
                bail!(
                    "the model at {} has changed since the session recorded it (sha256 {}… \
                     then, {}… now): restore that model to replay the session",
                    m.dir.display(),
                    &m.hash[..m.hash.len().min(12)],
                    &hash[..hash.len().min(12)]
                );
            }
            Some(scorer.into_handle())
        }
    };
    let name = meta.strategy.clone();
    let build = move |market: &Market, env: &TradingEnv| {
        registry::build(&name, market, env, &params).map_err(|e| e.to_string())
    };
    Ok((model, build))
}

pub fn live_cmd(cmd: LiveCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        LiveCmd::Replay(a) => replay_cmd(&a.dir, a.json),
    }
}

fn replay_cmd(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let rec = session::read(dir)?;
    let (model, mut build) = strategy_factory(&rec.meta)?;
    let mut cfg = session::SessionRun::exec_config(&rec.meta)?;
    cfg.env.model = model;
    let mut run = session::SessionRun::start(&rec.meta, &cfg, &mut build)?;
    let diff = run.replay(&rec.blocks, true)?;
    let report = session::ReplayReport {
        blocks: rec.blocks.len() as u64,
        decisions: rec.blocks.iter().map(|b| b.sent.len() as u64).sum(),
        identical: diff.is_none(),
        first_difference: diff,
        reorgs: rec.reorgs,
        torn_last_line: rec.torn,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} blocks, {} decisions, {} reorg(s){}: {}",
            report.blocks,
            report.decisions,
            report.reorgs,
            if report.torn_last_line {
                "; the last line was torn (a killed process) and left out"
            } else {
                ""
            },
            if report.identical {
                "every decision identical"
            } else {
                "decisions differ"
            }
        );
        if let Some(d) = &report.first_difference {
            println!(
                "first difference at block {}: recorded {}, replayed {}",
                d.block,
                serde_json::to_string(&d.recorded)?,
                serde_json::to_string(&d.replayed)?
            );
        }
    }
    Ok(if report.identical {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
