//! The genetic optimiser (genevo) and its random-search baseline.
//!
//! A genome is one gene in [0, 1] per strategy parameter, mapped into the parameter's bounds and
//! type by its [`ParamSpace`]. Each generation runs one genevo step (selection, crossover, mutation,
//! reinsertion) from the current population with a PRNG seeded by (seed, fold, generation), so a run
//! killed after generation `g` resumes from the checkpointed population bit for bit.
//!
//! Fitness is evaluated across the installed rayon pool: genevo evaluates a population in parallel,
//! and our reinserter ([`ParElitist`]) evaluates the offspring in parallel too (genevo's own
//! `ElitistReinserter` evaluates offspring one by one, which would cap the speed-up on two cores).
//! Fitness is a pure function of the genome, memoised per generation, and every parallel map
//! collects in input order, so the result does not depend on the number of threads.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dexlab_strategy::market::Market;
use dexlab_strategy::params::{ParamSpace, Params};
use dexlab_strategy::registry;
use genevo::algorithm::{Algorithm, EvaluatedPopulation};
use genevo::genetic::{Children, FitnessFunction, Offspring, Parents};
use genevo::operator::prelude::{
    BreederValueMutator, MaximizeSelector, MultiPointCrossBreeder, RandomValueMutator,
    SinglePointCrossBreeder, TournamentSelector, UniformCrossBreeder,
};
use genevo::operator::{
    CrossoverOp, GeneticOperator, MutationOp, ReinsertionOp, SelectionOp, SingleObjective,
};
use genevo::population::Population;
use genevo::random::Rng;
use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backtest::{ExecConfig, run_from};
use crate::config::{Crossover, GaConfig, Mutation, Objective, Selection};
use crate::error::{EvolveError, Result};
use crate::metrics::Metrics;
use crate::tape::Tape;

pub type Genome = Vec<f64>;

/// Infeasible individuals score below every feasible one, ordered by how close they came.
const INFEASIBLE: i64 = -(1 << 60);

/// The result of backtesting one parameter set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub metrics: Metrics,
    pub objective: f64,
    pub fitness: i64,
    pub feasible: bool,
}

/// Everything needed to backtest a genome on one window.
pub struct EvalCtx<'a> {
    pub tape: &'a Tape,
    /// The market after blocks `..from`; blocks `from..window.start` warm strategies up.
    pub start: &'a Market,
    pub from: usize,
    pub window: Range<usize>,
    pub strategy: &'a str,
    pub space: &'a ParamSpace,
    pub exec: &'a ExecConfig,
    pub objective: Objective,
    pub min_trades: u64,
    pub max_drawdown: f64,
}

impl EvalCtx<'_> {
    pub fn evaluate_params(&self, params: &Params) -> Evaluation {
        let market = self.start;
        let mut s = registry::build(self.strategy, market, &self.exec.env, params)
            .expect("the strategy name was validated before the run");
        let r = run_from(
            self.tape,
            market,
            self.from,
            self.window.clone(),
            s.as_mut(),
            self.exec,
            false,
        );
        self.score(r.metrics)
    }

    pub fn evaluate(&self, genes: &[f64]) -> Evaluation {
        self.evaluate_params(&self.space.decode(genes))
    }

    fn score(&self, metrics: Metrics) -> Evaluation {
        let objective = self.objective.of(&metrics);
        let included = metrics.filled + metrics.reverts;
        // A run that hit errors (unpriceable gas, a model that cannot score) is not evidence.
        let trades_ok = included >= self.min_trades && metrics.errors == 0;
        let dd_ok = metrics.max_drawdown <= self.max_drawdown;
        let fitness = if trades_ok && dd_ok {
            (objective * 1e6).round().clamp(-1e17, 1e17) as i64
        } else {
            let t = if self.min_trades == 0 {
                1.0
            } else {
                included.min(self.min_trades) as f64 / self.min_trades as f64
            };
            let d = if dd_ok {
                1.0
            } else {
                self.max_drawdown / metrics.max_drawdown
            };
            INFEASIBLE + ((t + d) * 1e9) as i64
        };
        Evaluation {
            metrics,
            objective,
            fitness,
            feasible: trades_ok && dd_ok,
        }
    }
}

fn key(g: &[f64]) -> Vec<u64> {
    g.iter().map(|x| x.to_bits()).collect()
}

/// What a worker elsewhere needs, besides the dataset and the model, to rebuild the [`EvalCtx`]
/// of one training window: the experiment's config (the backtest's execution costs, the
/// objective and its constraints), its seed, and the window's block indices on the tape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowJob {
    pub strategy: String,
    pub config: crate::config::ExperimentConfig,
    pub seed: u64,
    /// [`Tape::dataset_hash`] of the tape the indices refer to.
    pub dataset_hash: String,
    /// The id (name and content hash) of the model a model-driven strategy consults.
    pub model: Option<String>,
    /// Warm-up starts at block index `from`; the window is `window.0..window.1`.
    pub from: usize,
    pub window: (usize, usize),
}

/// Fitness computed somewhere other than this process's rayon pool (e.g. NATS workers). It
/// must return what [`EvalCtx::evaluate`] returns on the same tape, bit for bit, in the order
/// of `genomes`: the optimiser's result then does not depend on where fitness was computed.
pub trait RemoteEval: Sync {
    /// Evaluates `genomes` on `job`'s window, or says why it could not.
    fn evaluate(&self, job: &WindowJob, genomes: &[Genome]) -> Result<Vec<Evaluation>, String>;
}

/// A memoising fitness function over an [`EvalCtx`].
#[derive(Clone)]
pub struct Evaluator<'a> {
    ctx: &'a EvalCtx<'a>,
    cache: Arc<Mutex<HashMap<Vec<u64>, Arc<Evaluation>>>>,
    runs: Arc<AtomicU64>,
    remote: Option<(&'a dyn RemoteEval, Arc<WindowJob>)>,
    /// The first remote failure: every later evaluation is a placeholder until the optimiser
    /// checks it ([`Evaluator::check`]) and stops.
    failed: Arc<Mutex<Option<String>>>,
}

impl<'a> Evaluator<'a> {
    pub fn new(ctx: &'a EvalCtx<'a>) -> Self {
        Self {
            ctx,
            cache: Arc::default(),
            runs: Arc::default(),
            remote: None,
            failed: Arc::default(),
        }
    }

    /// Evaluates through `remote`, a batch at a time; `job` describes `ctx` to it.
    pub fn with_remote(ctx: &'a EvalCtx<'a>, remote: &'a dyn RemoteEval, job: WindowJob) -> Self {
        Self {
            remote: Some((remote, Arc::new(job))),
            ..Self::new(ctx)
        }
    }

    pub fn get(&self, g: &[f64]) -> Arc<Evaluation> {
        let k = key(g);
        if let Some(e) = self.cache.lock().expect("cache lock").get(&k) {
            return e.clone();
        }
        if self.remote.is_some() {
            // Only after a failed batch (every other genome was fetched first): a placeholder
            // the optimiser throws away when it sees the failure.
            self.fail_once(|| "an evaluation was asked for outside a batch".into());
            return Arc::new(self.ctx.score(Metrics::default()));
        }
        let e = Arc::new(self.ctx.evaluate(g));
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.cache.lock().expect("cache lock").insert(k, e.clone());
        e
    }

    fn fail_once(&self, why: impl FnOnce() -> String) {
        self.failed
            .lock()
            .expect("failure slot")
            .get_or_insert_with(why);
    }

    /// With a remote, evaluates the genomes not cached yet in one batch (a no-op locally, where
    /// [`Evaluator::get`] runs them across the pool).
    pub fn prefetch(&self, genomes: &[Genome]) {
        let Some((remote, job)) = &self.remote else {
            return;
        };
        if self.failed.lock().expect("failure slot").is_some() {
            return;
        }
        let mut missing: Vec<Genome> = Vec::new();
        {
            let cache = self.cache.lock().expect("cache lock");
            let mut seen = std::collections::HashSet::new();
            for g in genomes {
                let k = key(g);
                if !cache.contains_key(&k) && seen.insert(k) {
                    missing.push(g.clone());
                }
            }
        }
        if missing.is_empty() {
            return;
        }
        match remote.evaluate(job, &missing) {
            Ok(evals) if evals.len() == missing.len() => {
                self.runs.fetch_add(evals.len() as u64, Ordering::Relaxed);
                let mut cache = self.cache.lock().expect("cache lock");
                for (g, e) in missing.iter().zip(evals) {
                    cache.insert(key(g), Arc::new(e));
                }
            }
            Ok(evals) => self.fail_once(|| {
                format!(
                    "{} evaluations came back for {} genomes",
                    evals.len(),
                    missing.len()
                )
            }),
            Err(e) => self.fail_once(|| e),
        }
    }

    /// Evaluates `genomes` without caching them (same order): through the remote, or across
    /// the pool.
    pub fn evaluate_uncached(&self, genomes: &[Genome]) -> Result<Vec<Arc<Evaluation>>> {
        match &self.remote {
            Some((remote, job)) => {
                let evals = remote.evaluate(job, genomes).map_err(EvolveError::Remote)?;
                self.runs.fetch_add(evals.len() as u64, Ordering::Relaxed);
                Ok(evals.into_iter().map(Arc::new).collect())
            }
            None => Ok(genomes
                .par_iter()
                .map(|g| Arc::new(self.ctx.evaluate(g)))
                .collect()),
        }
    }

    /// The remote's failure, if one happened since the run began.
    pub fn check(&self) -> Result<()> {
        match self.failed.lock().expect("failure slot").clone() {
            Some(e) => Err(EvolveError::Remote(e)),
            None => Ok(()),
        }
    }

    /// Backtests actually run (cache misses).
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Forgets everything but `keep`, so memory stays flat across generations.
    fn retain(&self, keep: &[Genome]) {
        let keys: std::collections::HashSet<Vec<u64>> = keep.iter().map(|g| key(g)).collect();
        self.cache
            .lock()
            .expect("cache lock")
            .retain(|k, _| keys.contains(k));
    }
}

impl FitnessFunction<Genome, i64> for Evaluator<'_> {
    fn fitness_of(&self, g: &Genome) -> i64 {
        self.get(g).fitness
    }
    fn average(&self, f: &[i64]) -> i64 {
        if f.is_empty() {
            return 0;
        }
        (f.iter().map(|&x| x as i128).sum::<i128>() / f.len() as i128) as i64
    }
    fn highest_possible_fitness(&self) -> i64 {
        i64::MAX
    }
    fn lowest_possible_fitness(&self) -> i64 {
        i64::MIN
    }
}

#[derive(Clone, Debug)]
enum AnySelector {
    Tournament(TournamentSelector),
    Truncation(MaximizeSelector),
}

impl GeneticOperator for AnySelector {
    fn name() -> String {
        "configured-selection".into()
    }
}

impl SelectionOp<Genome, i64> for AnySelector {
    fn select_from<R: Rng + Sized>(
        &self,
        population: &EvaluatedPopulation<Genome, i64>,
        rng: &mut R,
    ) -> Vec<Parents<Genome>> {
        match self {
            AnySelector::Tournament(s) => s.select_from(population, rng),
            AnySelector::Truncation(s) => s.select_from(population, rng),
        }
    }
}

#[derive(Clone, Debug)]
enum AnyCrossover {
    Uniform(UniformCrossBreeder),
    Single(SinglePointCrossBreeder),
    Multi(MultiPointCrossBreeder),
}

impl GeneticOperator for AnyCrossover {
    fn name() -> String {
        "configured-crossover".into()
    }
}

impl CrossoverOp<Genome> for AnyCrossover {
    fn crossover<R: Rng + Sized>(&self, parents: Parents<Genome>, rng: &mut R) -> Children<Genome> {
        // One-gene genomes cannot be cut: children are copies, mutation still varies them.
        if parents.first().is_some_and(|p| p.len() < 2) {
            return parents;
        }
        match self {
            AnyCrossover::Uniform(c) => c.crossover(parents, rng),
            AnyCrossover::Single(c) => c.crossover(parents, rng),
            AnyCrossover::Multi(c) => c.crossover(parents, rng),
        }
    }
}

#[derive(Clone, Debug)]
enum AnyMutation {
    Random(RandomValueMutator<Genome>),
    Breeder(BreederValueMutator<Genome>),
}

impl GeneticOperator for AnyMutation {
    fn name() -> String {
        "configured-mutation".into()
    }
}

impl MutationOp<Genome> for AnyMutation {
    fn mutate<R: Rng + Sized>(&self, g: Genome, rng: &mut R) -> Genome {
        match self {
            AnyMutation::Random(m) => m.mutate(g, rng),
            AnyMutation::Breeder(m) => m.mutate(g, rng),
        }
    }
}

/// Where the reinserter leaves the next population and how many offspring were bred for it.
type NextSlot = Arc<Mutex<Option<(Vec<Genome>, usize)>>>;

/// Keeps the `elitism` best of the old population and fills the rest with the best offspring,
/// evaluating the offspring in parallel. Ties keep the earlier individual.
#[derive(Clone)]
struct ParElitist<'a> {
    elitism: usize,
    evaluator: Evaluator<'a>,
    next: NextSlot,
}

impl GeneticOperator for ParElitist<'_> {
    fn name() -> String {
        "parallel-elitist-reinsertion".into()
    }
}

impl SingleObjective for ParElitist<'_> {}

impl ReinsertionOp<Genome, i64> for ParElitist<'_> {
    fn combine<R: Rng + Sized>(
        &self,
        offspring: &mut Offspring<Genome>,
        population: &EvaluatedPopulation<Genome, i64>,
        _rng: &mut R,
    ) -> Vec<Genome> {
        let n = population.individuals().len();
        let old = population.individuals();
        let old_f = population.fitness_values();
        let mut old_idx: Vec<usize> = (0..n).collect();
        old_idx.sort_by(|&a, &b| old_f[b].cmp(&old_f[a]).then(a.cmp(&b)));
        let mut next: Vec<Genome> = old_idx
            .iter()
            .take(self.elitism)
            .map(|&i| old[i].clone())
            .collect();
        let children: Vec<Genome> = std::mem::take(offspring);
        let bred = children.len();
        self.evaluator.prefetch(&children);
        let fit: Vec<i64> = children
            .par_iter()
            .map(|g| self.evaluator.get(g).fitness)
            .collect();
        let mut order: Vec<usize> = (0..children.len()).collect();
        order.sort_by(|&a, &b| fit[b].cmp(&fit[a]).then(a.cmp(&b)));
        next.extend(
            order
                .into_iter()
                .take(n - next.len())
                .map(|i| children[i].clone()),
        );
        // Too few offspring: top up with the next-best old individuals.
        let mut extra = old_idx.into_iter().skip(self.elitism);
        while next.len() < n {
            match extra.next() {
                Some(i) => next.push(old[i].clone()),
                None => break,
            }
        }
        *self.next.lock().expect("population slot") = Some((next.clone(), bred));
        next
    }
}

/// Statistics of one evaluated generation, in objective units (feasible individuals only; `None`
/// when none is feasible).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenStats {
    pub generation: usize,
    pub best_fitness: i64,
    pub best: Option<f64>,
    pub mean: Option<f64>,
    pub worst: Option<f64>,
    pub feasible: usize,
    /// Fitness evaluations the GA asked for so far: the initial population plus every offspring
    /// (a count that does not depend on caching or on resumes; the random-search baseline gets the
    /// same budget).
    pub evaluations: u64,
    pub best_genome: Genome,
}

/// One generation's population with objective values, for the store and the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Individual {
    pub genome: Genome,
    pub objective: f64,
    pub fitness: i64,
}

/// Where an optimisation stands between generations: enough to resume it exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GaState {
    /// The next generation to evaluate.
    pub generation: usize,
    pub population: Vec<Genome>,
    pub history: Vec<GenStats>,
    pub best: Option<(Genome, i64)>,
    pub evaluations: u64,
}

fn seed_bytes(seed: u64, fold: usize, salt: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut x = seed
        ^ (fold as u64).wrapping_mul(0xA076_1D64_78BD_642F)
        ^ salt.wrapping_mul(0xE703_7ED1_A0B4_28DB);
    for chunk in out.chunks_mut(8) {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

/// The starting population: the strategy's defaults plus uniform random genomes.
pub fn initial_population(space: &ParamSpace, size: usize, seed: u64, fold: usize) -> Vec<Genome> {
    let mut rng = ChaCha8Rng::from_seed(seed_bytes(seed, fold, 1));
    let mut pop = vec![space.encode(&space.defaults())];
    while pop.len() < size {
        pop.push((0..space.len()).map(|_| rng.random::<f64>()).collect());
    }
    pop
}

impl GaState {
    pub fn new(space: &ParamSpace, cfg: &GaConfig, seed: u64, fold: usize) -> Self {
        Self {
            generation: 0,
            population: initial_population(space, cfg.population, seed, fold),
            history: Vec::new(),
            best: None,
            evaluations: 0,
        }
    }

    pub fn done(&self, cfg: &GaConfig) -> bool {
        self.generation > cfg.generations
    }
}

/// Runs the optimisation from `state` to the end, calling `on_generation` after every evaluated
/// generation with the new state (checkpoint it there) and the evaluated population.
/// Generations `0..=cfg.generations` are evaluated: the initial population and one per step.
pub fn optimise(
    ev: &Evaluator<'_>,
    cfg: &GaConfig,
    seed: u64,
    fold: usize,
    state: &mut GaState,
    on_generation: &mut dyn FnMut(&GaState, &[Individual]),
) -> Result<()> {
    // genevo asserts on what the config alone cannot know (the genome's length): checked here,
    // so that no caller can reach its panic.
    cfg.check_genome(ev.ctx.space.len())
        .map_err(EvolveError::Invalid)?;
    let selector = match cfg.selection {
        Selection::Tournament { size } => {
            AnySelector::Tournament(TournamentSelector::new(0.5, 2, size, 1.0, false))
        }
        Selection::Truncation => AnySelector::Truncation(MaximizeSelector::new(0.5, 2)),
    };
    let crossover = match cfg.crossover {
        Crossover::Uniform => AnyCrossover::Uniform(UniformCrossBreeder::new()),
        Crossover::SinglePoint => AnyCrossover::Single(SinglePointCrossBreeder::new()),
        Crossover::MultiPoint { points } => {
            AnyCrossover::Multi(MultiPointCrossBreeder::new(points))
        }
    };
    let mutation = match cfg.mutation {
        Mutation::Random { rate } => AnyMutation::Random(RandomValueMutator::new(rate, 0.0, 1.0)),
        Mutation::Breeder {
            rate,
            range,
            precision,
        } => AnyMutation::Breeder(BreederValueMutator::new(rate, range, precision, 0.0, 1.0)),
    };
    while !state.done(cfg) {
        let pop = state.population.clone();
        // Evaluate this generation (parallel, in order) and record it.
        ev.prefetch(&pop);
        let evals: Vec<Arc<Evaluation>> = pop.par_iter().map(|g| ev.get(g)).collect();
        ev.check()?;
        let individuals: Vec<Individual> = pop
            .iter()
            .zip(&evals)
            .map(|(g, e)| Individual {
                genome: g.clone(),
                objective: e.objective,
                fitness: e.fitness,
            })
            .collect();
        for ind in &individuals {
            if state.best.as_ref().is_none_or(|(_, f)| ind.fitness > *f) {
                state.best = Some((ind.genome.clone(), ind.fitness));
            }
        }
        let feasible: Vec<f64> = evals
            .iter()
            .filter(|e| e.feasible)
            .map(|e| e.objective)
            .collect();
        let (best_i, best_e) = evals
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.fitness.cmp(&b.1.fitness).then(b.0.cmp(&a.0)))
            .expect("population is not empty");
        let generation = state.generation;
        if generation == 0 {
            state.evaluations = pop.len() as u64;
        }
        let stats = GenStats {
            generation,
            best_fitness: best_e.fitness,
            best: feasible.iter().copied().reduce(f64::max),
            mean: (!feasible.is_empty())
                .then(|| feasible.iter().sum::<f64>() / feasible.len() as f64),
            worst: feasible.iter().copied().reduce(f64::min),
            feasible: feasible.len(),
            evaluations: state.evaluations,
            best_genome: pop[best_i].clone(),
        };
        state.history.push(stats);
        if generation < cfg.generations {
            // One genevo step from this population: select, cross, mutate, reinsert.
            let slot = Arc::new(Mutex::new(None));
            let mut ga = genevo::ga::genetic_algorithm()
                .with_evaluation(ev.clone())
                .with_selection(selector.clone())
                .with_crossover(crossover.clone())
                .with_mutation(mutation.clone())
                .with_reinsertion(ParElitist {
                    elitism: cfg.elitism,
                    evaluator: ev.clone(),
                    next: slot.clone(),
                })
                .with_initial_population(Population::with_individuals(pop))
                .build();
            let mut rng = genevo::random::get_rng(seed_bytes(seed, fold, 2 + generation as u64));
            ga.next(generation as u64, &mut rng)
                .map_err(|e| EvolveError::Optimiser {
                    fold,
                    generation,
                    message: format!("{e:?}"),
                })?;
            ev.check()?;
            let (next, bred) = slot
                .lock()
                .expect("population slot")
                .take()
                .expect("reinsertion ran");
            state.population = next;
            state.evaluations += bred as u64;
        }
        state.generation += 1;
        let mut keep = state.population.clone();
        if let Some((g, _)) = &state.best {
            keep.push(g.clone());
        }
        ev.retain(&keep);
        on_generation(state, &individuals);
    }
    Ok(())
}

/// Random search with a budget of `budget` backtests: the baseline every GA run is compared with.
/// Returns the best genome and its evaluation (ties keep the earlier draw).
pub fn random_search(
    ev: &Evaluator<'_>,
    space: &ParamSpace,
    budget: usize,
    seed: u64,
    fold: usize,
) -> Result<(Genome, Arc<Evaluation>)> {
    let mut rng = ChaCha8Rng::from_seed(seed_bytes(seed, fold, 0xFFFF));
    let mut best: Option<(Genome, Arc<Evaluation>)> = None;
    let mut left = budget.max(1);
    // In chunks, so memory stays bounded whatever the budget.
    while left > 0 {
        let n = left.min(256);
        left -= n;
        let genomes: Vec<Genome> = (0..n)
            .map(|_| (0..space.len()).map(|_| rng.random::<f64>()).collect())
            .collect();
        let evals = ev.evaluate_uncached(&genomes)?;
        for (g, e) in genomes.into_iter().zip(evals) {
            if best.as_ref().is_none_or(|(_, b)| e.fitness > b.fitness) {
                best = Some((g, e));
            }
        }
    }
    Ok(best.expect("budget is at least 1"))
}
