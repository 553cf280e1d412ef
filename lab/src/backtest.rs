//! One backtest of a strategy on a dataset, with simulated on-chain execution.

use std::path::PathBuf;

use dexlab_evolve::backtest::{self, BacktestResult};
use dexlab_evolve::config::ExperimentConfig;
use dexlab_evolve::tape::Tape;
use dexlab_strategy::{Params, registry};

use crate::error::Result;
use crate::model::{ModelWindow, load_model, model_window};
use crate::progress::{Event, Progress};

/// A backtest as asked for.
#[derive(Debug, Clone)]
pub struct BacktestRequest {
    /// Dataset folder.
    pub data: PathBuf,
    pub strategy: String,
    /// The strategy's parameters (`registry::parse_params`).
    pub params: Params,
    /// Only its `backtest` table is used.
    pub config: ExperimentConfig,
    /// Seed of the competition draws.
    pub seed: u64,
    /// Model directory of a model-driven strategy.
    pub model: Option<PathBuf>,
}

/// A finished backtest.
#[derive(Debug, Clone)]
pub struct BacktestOutcome {
    /// The parameters, by name.
    pub params: serde_json::Value,
    pub dataset_hash: String,
    /// Blocks replayed.
    pub blocks: usize,
    /// Where a run with a model was confined (the blocks after its training data).
    pub model_window: Option<ModelWindow>,
    /// Metrics, trades and equity curve.
    pub result: BacktestResult,
    pub seconds: f64,
}

/// Replays the dataset through the strategy, recording trades and the equity curve.
pub fn run(req: &BacktestRequest, progress: &mut dyn Progress) -> Result<BacktestOutcome> {
    let tape = Tape::load(&req.data)?;
    let mut exec = req.config.backtest.resolve(&tape, req.seed)?;
    let model = load_model(req.model.as_deref(), &req.strategy)?;
    let window = model
        .as_ref()
        .map(|m| model_window(&tape, m, 2, "for a backtest"))
        .transpose()?;
    if let Some(w) = &window {
        progress.event(Event::Note(&w.note));
    }
    exec.env.model = model.map(|m| m.handle);
    let range = window
        .as_ref()
        .map_or(0..tape.blocks.len(), |w| w.range.clone());
    let blocks = range.len();
    let market = tape.market_at(range.start);
    let mut s = registry::build(&req.strategy, &market, &exec.env, &req.params)?;
    let started = std::time::Instant::now();
    let result = backtest::run(&tape, &market, range, s.as_mut(), &exec, true);
    let space = registry::info(&req.strategy)?.params;
    Ok(BacktestOutcome {
        params: req.params.to_json(&space),
        dataset_hash: tape.dataset_hash.clone(),
        blocks,
        model_window: window,
        result,
        seconds: started.elapsed().as_secs_f64(),
    })
}
