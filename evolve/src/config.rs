//! The experiment config (TOML): backtest environment, GA operators, walk-forward. Parsed and
//! validated once here; the rest of the crate takes the typed result.

use std::path::Path;

pub use dexlab_engine::config::{BacktestConfig, MAX_DECIMALS, MAX_LATENCY_BLOCKS, MAX_PERIODS};
use serde::{Deserialize, Serialize};

use crate::error::{EvolveError, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentConfig {
    pub backtest: BacktestConfig,
    pub ga: GaConfig,
    pub walk_forward: WalkForwardConfig,
}

/// What the optimiser maximises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    NetPnl,
    Sharpe,
    Sortino,
    Calmar,
}

impl Objective {
    pub fn of(self, m: &crate::metrics::Metrics) -> f64 {
        match self {
            Objective::NetPnl => m.net_pnl_quote,
            Objective::Sharpe => m.sharpe,
            Objective::Sortino => m.sortino,
            Objective::Calmar => m.calmar,
        }
    }

    pub fn label(self, quote: &str) -> String {
        match self {
            Objective::NetPnl => format!("net PnL ({quote})"),
            Objective::Sharpe => "Sharpe".into(),
            Objective::Sortino => "Sortino".into(),
            Objective::Calmar => "Calmar".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GaConfig {
    pub population: usize,
    pub generations: usize,
    pub objective: Objective,
    /// Fewer included bundles than this in the training window is infeasible.
    pub min_trades: u64,
    /// A training max drawdown above this is infeasible.
    pub max_drawdown: f64,
    /// Best individuals carried unchanged into the next generation.
    pub elitism: usize,
    pub selection: Selection,
    pub crossover: Crossover,
    pub mutation: Mutation,
}

impl Default for GaConfig {
    fn default() -> Self {
        Self {
            population: 24,
            generations: 10,
            objective: Objective::NetPnl,
            min_trades: 1,
            max_drawdown: 0.5,
            elitism: 2,
            selection: Selection::default(),
            crossover: Crossover::default(),
            mutation: Mutation::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Selection {
    /// genevo's `TournamentSelector`: the best of `size` random individuals, always. (Its
    /// probabilistic variant can pick an odd number of parents and panic in genevo 0.7.1.)
    Tournament { size: usize },
    /// genevo's `MaximizeSelector` (truncation).
    Truncation,
}

impl Default for Selection {
    fn default() -> Self {
        Selection::Tournament { size: 3 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Crossover {
    #[default]
    Uniform,
    SinglePoint,
    MultiPoint {
        points: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Mutation {
    /// genevo's `RandomValueMutator`: a mutated gene is redrawn uniformly.
    Random { rate: f64 },
    /// genevo's `BreederValueMutator`: a mutated gene moves by up to `range` (genes live in [0, 1]).
    Breeder {
        rate: f64,
        range: f64,
        precision: u8,
    },
}

impl Default for Mutation {
    fn default() -> Self {
        Mutation::Breeder {
            rate: 0.2,
            range: 0.2,
            precision: 6,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalkForwardConfig {
    pub folds: usize,
    /// Training windows grow from the start (true) or roll with a fixed length (false).
    pub anchored: bool,
}

impl Default for WalkForwardConfig {
    fn default() -> Self {
        Self {
            folds: 3,
            anchored: false,
        }
    }
}

impl ExperimentConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| EvolveError::Io {
            path: path.into(),
            source,
        })?;
        let cfg: Self = toml::from_str(&text).map_err(|e| EvolveError::Config {
            path: path.into(),
            message: e.to_string(),
        })?;
        cfg.validate().map_err(|m| EvolveError::Config {
            path: path.into(),
            message: m,
        })?;
        Ok(cfg)
    }

    /// Checks every value once, naming the key that is wrong. Counts are bounded above too, so
    /// that no product or sum of them overflows and nothing asks for more memory than exists.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let g = &self.ga;
        self.backtest.validate()?;
        let within = |key: &str, v: usize, lo: usize, hi: usize, why: &str| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!("{key} = {v} must be between {lo} and {hi}{why}"))
            }
        };
        if g.population < MIN_POPULATION {
            return Err(format!(
                "ga.population = {} (need at least {MIN_POPULATION}: genevo's genetic algorithm \
                 refuses smaller populations)",
                g.population
            ));
        }
        within(
            "ga.population",
            g.population,
            MIN_POPULATION,
            MAX_POPULATION,
            "",
        )?;
        within("ga.generations", g.generations, 1, MAX_GENERATIONS, "")?;
        within(
            "walk_forward.folds",
            self.walk_forward.folds,
            1,
            MAX_FOLDS,
            "",
        )?;
        if g.elitism >= g.population {
            return Err(format!(
                "ga.elitism = {} must be below ga.population ({})",
                g.elitism, g.population
            ));
        }
        if !(g.max_drawdown > 0.0 && g.max_drawdown <= 1.0) {
            return Err(format!(
                "ga.max_drawdown = {} must be in (0, 1]",
                g.max_drawdown
            ));
        }
        match &g.mutation {
            Mutation::Random { rate } if !(0.0..=1.0).contains(rate) => {
                return Err(format!("ga.mutation.rate = {rate} must be in [0, 1]"));
            }
            Mutation::Breeder {
                rate,
                range,
                precision,
            } => {
                if !(0.0..=1.0).contains(rate) {
                    return Err(format!("ga.mutation.rate = {rate} must be in [0, 1]"));
                }
                if !(*range > 0.0 && *range <= 1.0) {
                    return Err(format!("ga.mutation.range = {range} must be in (0, 1]"));
                }
                // genevo steps by 2^-precision; past an f64's 52 fraction bits that is nothing,
                // and from 64 on its shift overflows.
                if *precision > MAX_PRECISION {
                    return Err(format!(
                        "ga.mutation.precision = {precision} must be at most {MAX_PRECISION}"
                    ));
                }
            }
            Mutation::Random { .. } => {}
        }
        if let Selection::Tournament { size } = g.selection
            && !(2..=g.population).contains(&size)
        {
            return Err(format!(
                "ga.selection.size = {size}: a tournament must be between 2 and ga.population \
                 ({}) individuals",
                g.population
            ));
        }
        if let Crossover::MultiPoint { points } = g.crossover
            && !(1..=MAX_CROSSOVER_POINTS).contains(&points)
        {
            return Err(format!(
                "ga.crossover.points = {points} must be between 1 and {MAX_CROSSOVER_POINTS} \
                 (and at most half the strategy's genes)"
            ));
        }
        Ok(())
    }
}

/// genevo's GA builder refuses to step a smaller population (`DEFAULT_MIN_POPULATION_SIZE` of
/// genevo 0.7's `ga::builder`; we do not lower it).
pub const MIN_POPULATION: usize = 6;
/// Bounds far above any useful run, low enough that no count multiplied by another overflows.
pub const MAX_POPULATION: usize = 1_000_000;
pub const MAX_GENERATIONS: usize = 1_000_000;
pub const MAX_FOLDS: usize = 10_000;
pub const MAX_CROSSOVER_POINTS: usize = 1_000;
pub const MAX_PRECISION: u8 = 52;

impl GaConfig {
    /// Checks the operators against a strategy's genome of `genes` genes (one per parameter):
    /// genevo's multi-point crossover asserts `genes >= 2 * points`. One-gene genomes are never
    /// cut (see `optimise`), so any number of points is harmless there.
    pub fn check_genome(&self, genes: usize) -> std::result::Result<(), String> {
        if let Crossover::MultiPoint { points } = self.crossover
            && genes >= 2
            && points > genes / 2
        {
            return Err(format!(
                "ga.crossover.points = {points} is too many for the strategy's {genes} genes: \
                 multi-point crossover takes at most {} (half the genes), or use kind = \
                 \"single_point\" or \"uniform\"",
                genes / 2
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dexlab_strategy::gas::GasConfig;

    #[test]
    fn a_bad_gas_value_is_refused_with_its_key() {
        for v in ["nan", "-0.1", "2.5", "inf"] {
            let text = format!("[backtest.gas]\nrevert_fraction = {v}\n");
            let cfg: ExperimentConfig = toml::from_str(&text).unwrap();
            let e = cfg.validate().unwrap_err();
            assert!(e.starts_with("backtest.gas.revert_fraction = "), "{v}: {e}");
        }
        let ok: ExperimentConfig =
            toml::from_str("[backtest.gas]\nrevert_fraction = 1.0\n").unwrap();
        ok.validate().unwrap();
    }

    /// The examples are the documentation of every key: they must load as they are.
    #[test]
    fn the_example_configs_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let devnet = ExperimentConfig::load(&dir.join("evolve-devnet.toml")).unwrap();
        assert_eq!(devnet.backtest.gas.min_base_fee_wei, 5_000_000);
        assert_eq!(devnet.backtest.gas, GasConfig::default());
        let mainnet = ExperimentConfig::load(&dir.join("evolve-mainnet.toml")).unwrap();
        assert!(!mainnet.backtest.gas.op_stack);
    }
}

#[cfg(test)]
mod bad_values {
    use super::*;

    fn with(edit: impl FnOnce(&mut ExperimentConfig)) -> std::result::Result<(), String> {
        let mut c = ExperimentConfig::default();
        edit(&mut c);
        c.validate()
    }

    /// genevo's GA refuses populations below its builder's minimum (6) at the first step; the
    /// config says so up front instead of letting the run panic there.
    #[test]
    fn populations_below_genevos_minimum_are_refused() {
        for p in [0, 4, 5] {
            let e = with(|c| c.ga.population = p).unwrap_err();
            assert!(e.contains(&format!("ga.population = {p}")), "{e}");
            assert!(e.contains("at least 6"), "{e}");
        }
        with(|c| c.ga.population = 6).unwrap();
    }

    /// Counts whose products or sums would overflow, or that no machine could hold, are refused
    /// with their key instead of panicking (or allocating forever) later.
    #[test]
    fn huge_counts_are_refused_with_their_key() {
        type Edit = Box<dyn Fn(&mut ExperimentConfig)>;
        let cases: [(&str, Edit); 6] = [
            ("ga.population", Box::new(|c| c.ga.population = usize::MAX)),
            (
                "ga.generations",
                Box::new(|c| c.ga.generations = usize::MAX),
            ),
            (
                "walk_forward.folds",
                Box::new(|c| c.walk_forward.folds = usize::MAX),
            ),
            (
                "backtest.periods",
                Box::new(|c| c.backtest.periods = usize::MAX),
            ),
            (
                "ga.selection",
                Box::new(|c| c.ga.selection = Selection::Tournament { size: usize::MAX }),
            ),
            (
                "ga.crossover.points",
                Box::new(|c| c.ga.crossover = Crossover::MultiPoint { points: usize::MAX }),
            ),
        ];
        for (key, edit) in cases {
            let e = with(|c| edit(c)).unwrap_err();
            assert!(e.contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn non_finite_or_negative_times_and_rates_are_refused() {
        for v in [f64::NAN, -2.0, 0.0, f64::INFINITY] {
            let e = with(|c| c.backtest.block_time_secs = v).unwrap_err();
            assert!(e.contains("backtest.block_time_secs"), "{v}: {e}");
        }
        for v in [f64::NAN, -0.1, 1.5] {
            let e = with(|c| c.ga.mutation = Mutation::Random { rate: v }).unwrap_err();
            assert!(e.contains("ga.mutation"), "{v}: {e}");
        }
        let e = with(|c| {
            c.ga.mutation = Mutation::Breeder {
                rate: 0.2,
                range: 0.2,
                precision: 64,
            }
        })
        .unwrap_err();
        assert!(e.contains("ga.mutation.precision = 64"), "{e}");
        let e = with(|c| c.ga.max_drawdown = f64::NAN).unwrap_err();
        assert!(e.contains("ga.max_drawdown"), "{e}");
    }
}
