//! Walk-forward validation: optimise on each training window, evaluate the winner on the window
//! that follows, next to the baselines (no trading, default parameters, random search with the same
//! budget). Checkpointed after every generation; a killed run resumes where it stopped and ends
//! with the same result.

use std::ops::Range;
use std::path::{Path, PathBuf};

use dexlab_strategy::market::Market;
use dexlab_strategy::params::ParamSpace;
use dexlab_strategy::registry::{self, NO_TRADE};
use dexlab_types::RunKind;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backtest::{BacktestResult, EquityPoint, ExecConfig, run_from};
use crate::config::ExperimentConfig;
use crate::error::{EvolveError, Result};
use crate::metrics::Metrics;
use crate::optimise::{
    EvalCtx, Evaluator, GaState, GenStats, Individual, RemoteEval, WindowJob, optimise,
    random_search,
};
use crate::tape::Tape;

/// One optimisation or baseline, in sample and out of sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOutcome {
    pub kind: RunKind,
    pub params: serde_json::Value,
    pub train_objective: f64,
    pub test_objective: f64,
    pub train_metrics: Metrics,
    pub test_metrics: Metrics,
    pub test_equity: Vec<EquityPoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldResult {
    pub fold: usize,
    /// Block numbers, inclusive.
    pub train_blocks: (u64, u64),
    pub test_blocks: (u64, u64),
    pub runs: Vec<RunOutcome>,
    pub generations: Vec<GenStats>,
    /// The final population with objective values (for parameter distributions).
    pub final_population: Vec<Individual>,
    pub evaluations: u64,
}

impl FoldResult {
    pub fn run(&self, kind: RunKind) -> Option<&RunOutcome> {
        self.runs.iter().find(|r| r.kind == kind)
    }
}

/// What a run is: a change to any of it makes a checkpoint unusable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub strategy: String,
    pub config: ExperimentConfig,
    pub seed: u64,
    pub dataset_hash: String,
    /// The model a model-driven strategy consults (its id: name and content hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Block numbers (inclusive) the whole walk-forward is confined to, e.g. those after the
    /// blocks a model was trained and validated on; `None`: every block of the tape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<(u64, u64)>,
}

impl RunSpec {
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_vec(self).expect("a spec serialises");
        hex::encode(Sha256::digest(json))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub fingerprint: String,
    pub folds_done: Vec<FoldResult>,
    /// The fold in progress and its GA state.
    pub current: Option<(usize, GaState)>,
    /// Free-form data of the caller (e.g. the store's experiment id), kept across resumes.
    pub tag: serde_json::Value,
}

impl Checkpoint {
    pub fn load(path: &Path) -> Result<Option<Checkpoint>> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| EvolveError::Checkpoint {
                        path: path.into(),
                        message: format!("unreadable ({e}); pass --force to start over"),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(EvolveError::Io {
                path: path.into(),
                source,
            }),
        }
    }

    /// Written to a temporary file, synced and renamed: a kill leaves the old or the new one.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp: PathBuf = path.with_extension("json.tmp");
        let io = |source| EvolveError::Io {
            path: tmp.clone(),
            source,
        };
        let bytes = serde_json::to_vec(self).expect("a checkpoint serialises");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(|source| EvolveError::Io {
            path: path.into(),
            source,
        })
    }
}

/// Progress reported to the caller.
pub enum Progress<'a> {
    Generation {
        fold: usize,
        stats: &'a GenStats,
        population: &'a [Individual],
        space: &'a ParamSpace,
    },
    FoldDone(&'a FoldResult),
}

/// The folds' block-index windows: `folds + 1` equal chunks; fold `i` trains on chunk `i` (or
/// chunks `0..=i` when anchored) and tests on chunk `i + 1`.
pub fn fold_windows(
    blocks: usize,
    folds: usize,
    anchored: bool,
) -> Result<Vec<(Range<usize>, Range<usize>)>> {
    let chunks = folds + 1;
    if blocks < chunks * 2 {
        return Err(EvolveError::TooFewBlocks { blocks, folds });
    }
    let edge = |i: usize| i * blocks / chunks;
    Ok((0..folds)
        .map(|i| {
            let train = if anchored {
                0..edge(i + 1)
            } else {
                edge(i)..edge(i + 1)
            };
            (train, edge(i + 1)..edge(i + 2))
        })
        .collect())
}

/// The tape's block indices whose block numbers lie in `first..=last`.
pub fn block_span(tape: &Tape, (first, last): (u64, u64)) -> Range<usize> {
    let start = tape.blocks.partition_point(|b| b.number < first);
    let end = tape.blocks.partition_point(|b| b.number <= last);
    start..end.max(start)
}

/// The folds' (train, test) block-index windows of `spec` on `tape`, refused when the blocks with
/// events are too few for them or a window has none (every run there would replay nothing):
/// the error says how many blocks have events and how many the windows need.
pub fn walk_forward_windows(
    tape: &Tape,
    spec: &RunSpec,
) -> Result<Vec<(Range<usize>, Range<usize>)>> {
    let wf = &spec.config.walk_forward;
    let span = spec
        .blocks
        .map_or(0..tape.blocks.len(), |b| block_span(tape, b));
    let shift = |r: Range<usize>| r.start + span.start..r.end + span.start;
    let windows: Vec<_> = fold_windows(span.len(), wf.folds, wf.anchored)?
        .into_iter()
        .map(|(train, test)| (shift(train), shift(test)))
        .collect();
    let has_events = |i: usize| tape.block_starts[i] < tape.block_starts[i + 1];
    let with_events: Vec<usize> = span.clone().filter(|&i| has_events(i)).collect();
    let chunks = wf.folds + 1;
    let need = 2 * chunks;
    let within = match spec.blocks {
        Some((a, b)) => format!(" in blocks {a}..={b}"),
        None => String::new(),
    };
    if with_events.len() < need {
        return Err(EvolveError::EmptyWindows(format!(
            "the dataset has {} blocks with events (of {} blocks{within}): too few for {} \
             walk-forward folds, whose {chunks} windows need at least {need} (2 each); use \
             fewer folds (--folds) or more data",
            with_events.len(),
            span.len(),
            wf.folds
        )));
    }
    // The chunks the windows are cut from: fold 1's training chunk (anchored or not), then each
    // fold's test chunk (the next fold's training chunk when rolling).
    let chunk_list = std::iter::once((
        windows[0].0.clone(),
        "the training window of fold 1".to_owned(),
    ))
    .chain(
        windows
            .iter()
            .enumerate()
            .map(|(f, (_, test))| (test.clone(), format!("the test window of fold {}", f + 1))),
    );
    for (c, (range, what)) in chunk_list.enumerate() {
        if !range.clone().any(has_events) {
            let (first, last) = (
                tape.blocks[with_events[0]].number,
                tape.blocks[with_events[with_events.len() - 1]].number,
            );
            return Err(EvolveError::EmptyWindows(format!(
                "walk-forward window {} of {chunks} (blocks {}..={}, {what}) has no block with \
                 events: the dataset's {} blocks with events lie in blocks {first}..={last}; use \
                 fewer folds (--folds), or data whose events span its blocks",
                c + 1,
                tape.blocks[range.start].number,
                tape.blocks[range.end - 1].number,
                with_events.len()
            )));
        }
    }
    Ok(windows)
}

/// Runs the whole walk-forward experiment, resuming from `checkpoint` when it holds a run of the
/// same spec. The caller installs the rayon pool.
pub fn run_experiment(
    tape: &Tape,
    spec: &RunSpec,
    exec: &ExecConfig,
    checkpoint: &Path,
    tag: serde_json::Value,
    on_progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(Vec<FoldResult>, serde_json::Value)> {
    run_experiment_with(tape, spec, exec, checkpoint, tag, None, on_progress)
}

/// [`run_experiment`], with the optimiser's and the random search's fitness computed by
/// `remote` when given (the baselines' and winners' eight backtests per fold stay here). The
/// result is the same either way.
pub fn run_experiment_with(
    tape: &Tape,
    spec: &RunSpec,
    exec: &ExecConfig,
    checkpoint: &Path,
    tag: serde_json::Value,
    remote: Option<&dyn RemoteEval>,
    on_progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(Vec<FoldResult>, serde_json::Value)> {
    let info = registry::info(&spec.strategy)?;
    let space = &info.params;
    // A strategy that cannot be built on this data (e.g. a model that does not fit it) fails
    // here, once, rather than inside the optimiser's threads.
    registry::build(&spec.strategy, &tape.market(), &exec.env, &space.defaults())?;
    let cfg = &spec.config;
    cfg.ga
        .check_genome(space.len())
        .map_err(EvolveError::Invalid)?;
    let windows = walk_forward_windows(tape, spec)?;
    let fp = spec.fingerprint();
    let mut ck = match Checkpoint::load(checkpoint)? {
        Some(c) if c.fingerprint == fp => c,
        Some(_) => {
            return Err(EvolveError::Checkpoint {
                path: checkpoint.into(),
                message: "belongs to a different run (strategy, config, seed or data changed); \
                          use another --out directory or delete it"
                    .into(),
            });
        }
        None => Checkpoint {
            fingerprint: fp,
            folds_done: Vec::new(),
            current: None,
            tag,
        },
    };
    ck.save(checkpoint)?;
    // Markets where every window's warm-up may begin, in one replay pass.
    let warm = |i: usize| i.saturating_sub(exec.max_warmup_blocks);
    let mut edges: Vec<usize> = windows
        .iter()
        .flat_map(|(a, b)| [warm(a.start), warm(b.start)])
        .collect();
    edges.sort_unstable();
    edges.dedup();
    let markets = markets_at(tape, &edges);
    let market_at = |i: usize| &markets[edges.binary_search(&i).expect("an edge")].1;

    for (fold, (train, test)) in windows.iter().enumerate() {
        if ck.folds_done.iter().any(|f| f.fold == fold) {
            continue;
        }
        let train_ctx = EvalCtx {
            tape,
            start: market_at(warm(train.start)),
            from: warm(train.start),
            window: train.clone(),
            strategy: &spec.strategy,
            space,
            exec,
            objective: cfg.ga.objective,
            min_trades: cfg.ga.min_trades,
            max_drawdown: cfg.ga.max_drawdown,
        };
        let ev = match remote {
            Some(r) => Evaluator::with_remote(
                &train_ctx,
                r,
                WindowJob {
                    strategy: spec.strategy.clone(),
                    config: spec.config.clone(),
                    seed: spec.seed,
                    dataset_hash: spec.dataset_hash.clone(),
                    model: spec.model.clone(),
                    from: warm(train.start),
                    window: (train.start, train.end),
                },
            ),
            None => Evaluator::new(&train_ctx),
        };
        let mut state = match ck.current.take() {
            Some((f, s)) if f == fold => s,
            _ => GaState::new(space, &cfg.ga, spec.seed, fold),
        };
        let mut save_err = None;
        optimise(&ev, &cfg.ga, spec.seed, fold, &mut state, &mut |st, pop| {
            on_progress(Progress::Generation {
                fold,
                stats: st.history.last().expect("a generation was recorded"),
                population: pop,
                space,
            });
            ck.current = Some((fold, st.clone()));
            if let Err(e) = ck.save(checkpoint) {
                save_err.get_or_insert(e);
            }
        })?;
        if let Some(e) = save_err {
            return Err(e);
        }
        let (best_genome, _) = state.best.clone().expect("at least one generation ran");
        let budget = cfg.ga.population * (cfg.ga.generations + 1);
        let (rs_genome, _) = random_search(&ev, space, budget, spec.seed, fold)?;

        let outcome =
            |kind: RunKind, params: &dexlab_strategy::Params, strategy: &str| -> RunOutcome {
                let eval = |w: &Range<usize>, record: bool| -> BacktestResult {
                    let from = warm(w.start);
                    let start = market_at(from);
                    let mut s = registry::build(strategy, start, &exec.env, params)
                        .expect("validated strategy");
                    run_from(tape, start, from, w.clone(), s.as_mut(), exec, record)
                };
                let tr = eval(train, false);
                let te = eval(test, true);
                RunOutcome {
                    kind,
                    params: params.to_json(space),
                    train_objective: cfg.ga.objective.of(&tr.metrics),
                    test_objective: cfg.ga.objective.of(&te.metrics),
                    train_metrics: tr.metrics,
                    test_metrics: te.metrics,
                    test_equity: te.equity,
                }
            };
        let no_trade = {
            let mut o = outcome(RunKind::NoTrade, &space.defaults(), NO_TRADE);
            o.params = serde_json::json!({});
            o
        };
        let final_population = state
            .population
            .iter()
            .map(|g| {
                let e = ev.get(g);
                Individual {
                    genome: g.clone(),
                    objective: e.objective,
                    fitness: e.fitness,
                }
            })
            .collect();
        let result = FoldResult {
            fold,
            train_blocks: (
                tape.blocks[train.start].number,
                tape.blocks[train.end - 1].number,
            ),
            test_blocks: (
                tape.blocks[test.start].number,
                tape.blocks[test.end - 1].number,
            ),
            runs: vec![
                outcome(RunKind::Ga, &space.decode(&best_genome), &spec.strategy),
                outcome(
                    RunKind::RandomSearch,
                    &space.decode(&rs_genome),
                    &spec.strategy,
                ),
                outcome(RunKind::Default, &space.defaults(), &spec.strategy),
                no_trade,
            ],
            generations: state.history.clone(),
            final_population,
            evaluations: state.evaluations + budget as u64,
        };
        on_progress(Progress::FoldDone(&result));
        ck.folds_done.push(result);
        ck.current = None;
        ck.save(checkpoint)?;
    }
    ck.folds_done.sort_by_key(|f| f.fold);
    Ok((ck.folds_done, ck.tag))
}

/// The markets after blocks `..e` for each of the ascending `edges`, in one replay pass.
pub fn markets_at(tape: &Tape, edges: &[usize]) -> Vec<(usize, Market)> {
    let mut out = Vec::with_capacity(edges.len());
    let mut m = tape.market();
    let mut at = 0;
    for &e in edges {
        while at < e {
            for ev in tape.events_of(at) {
                crate::tape::apply(&mut m, ev);
            }
            m.block = tape.blocks[at];
            at += 1;
        }
        out.push((e, m.clone()));
    }
    out
}
