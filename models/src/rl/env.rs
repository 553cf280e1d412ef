//! The trading environment of the RL agents: an agent wrapped as a [`Strategy`], so that the
//! real backtester (`dexlab-engine`) runs it with the same fills, LP fees, gas, latency and
//! competition as every other strategy, and the live engine can run the same policy.
//!
//! - **Observation**: the last `window` rows of [`OnlineFeatures`] (standardised with the
//!   training window's statistics, see [`ObsStats`]) and the share of equity held in the traded
//!   token.
//! - **Actions**: `0` hold; `1..=k` buy the traded token with `buy_fractions[i]` of the quote
//!   balance (only when flat); `k + 1` sell the whole position. An action that does not apply
//!   (buy while holding, sell while flat) holds.
//! - **Reward**: the change of equity (quote balance plus the position at the pool's reference
//!   price, the one our own trades did not move, after gas) between two decisions, in bps of the starting capital. Fees, slippage, reverts
//!   and gas are all in it because the backtester's balances are.
//! - **Decisions** every `decide_every` blocks, none while a bundle is in flight; the episode
//!   ends at `end_block` (the last block of the window), which closes the last transition.
//!
//! The traded pool is the one `price-reversion` trades ([`dexlab_strategy::reversion::traded_pool`]),
//! so the agent and the tuned heuristic it is compared with face the same market.

use alloy_primitives::{Address, U256};
use dexlab_strategy::market::{Market, to_human};
use dexlab_strategy::online::{OnlineFeatures, market_labels};
use dexlab_strategy::single::SwapPlan;
use dexlab_strategy::{Action, Context, Fill, Strategy, TradingEnv};
use serde::{Deserialize, Serialize};

use super::{Agent, AgentConfig, AgentKind, DqnConfig, PpoConfig, StepEnd};
use crate::{ModelError, Result};

/// The RL TOML of `dexlab rl train --rl-config`. Every key is optional:
///
/// ```toml
/// episodes = 10          # passes over the training blocks
/// test_fraction = 0.3    # the last 30 % of the blocks are held out
/// [env]                  # see EnvConfig
/// buy_fractions = [0.25, 1.0]
/// [dqn]                  # see DqnConfig
/// [ppo]                  # see PpoConfig
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RlConfig {
    pub episodes: usize,
    pub test_fraction: f64,
    pub env: EnvConfig,
    pub dqn: DqnConfig,
    pub ppo: PpoConfig,
}

impl Default for RlConfig {
    fn default() -> Self {
        Self {
            episodes: 10,
            test_fraction: 0.3,
            env: EnvConfig::default(),
            dqn: DqnConfig::default(),
            ppo: PpoConfig::default(),
        }
    }
}

impl RlConfig {
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let c: RlConfig = toml::from_str(&text).map_err(|source| ModelError::Toml {
            path: path.into(),
            source,
        })?;
        c.validate(&path.display().to_string())?;
        Ok(c)
    }

    /// `file` names the source of the values in errors.
    pub fn validate(&self, file: &str) -> Result<()> {
        super::config::bounded(file, "episodes", self.episodes, 1, 1_000_000)?;
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return Err(ModelError::config(
                file,
                "test_fraction",
                "must be in (0, 1)",
            ));
        }
        self.env.validate(file)?;
        self.dqn.validate(file)?;
        self.ppo.validate(file)
    }

    pub fn agent(&self, kind: AgentKind) -> AgentConfig {
        match kind {
            AgentKind::Dqn => AgentConfig::Dqn(self.dqn.clone()),
            AgentKind::Ppo => AgentConfig::Ppo(self.ppo.clone()),
        }
    }
}

/// What the environment is, from the `[env]` table of the RL config. Every key is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvConfig {
    /// Feature columns (dataset names); default: returns and volatilities of the traded pool
    /// and its spreads against the other pools on the same pair.
    pub features: Option<Vec<String>>,
    /// Feature rows per observation.
    pub window: usize,
    pub decide_every: u64,
    /// Entry sizes, as fractions of the quote balance: one action each.
    pub buy_fractions: Vec<f64>,
    pub max_slippage_bps: f64,
    pub gas_price_multiplier: f64,
    /// Reward units per bps of starting capital.
    pub reward_scale: f64,
}

impl Default for EnvConfig {
    fn default() -> Self {
        Self {
            features: None,
            window: 1,
            decide_every: 1,
            buy_fractions: vec![0.25, 1.0],
            max_slippage_bps: 30.0,
            gas_price_multiplier: 1.1,
            reward_scale: 1.0,
        }
    }
}

impl EnvConfig {
    pub fn validate(&self, file: &str) -> Result<()> {
        let err = |key: &str, msg: &str| Err(ModelError::config(file, &format!("env.{key}"), msg));
        if !(1..=4096).contains(&self.window) {
            return err(
                "window",
                &format!("{} must be between 1 and 4096", self.window),
            );
        }
        if self.decide_every == 0 {
            return err("decide_every", "must be at least 1");
        }
        if self.buy_fractions.is_empty()
            || self.buy_fractions.iter().any(|f| !(*f > 0.0 && *f <= 1.0))
        {
            return err(
                "buy_fractions",
                "must be a non-empty list of fractions in (0, 1]",
            );
        }
        if !(self.max_slippage_bps > 0.0 && self.max_slippage_bps < 10_000.0) {
            return err("max_slippage_bps", "must be in (0, 10000)");
        }
        if !(self.gas_price_multiplier >= 1.0 && self.gas_price_multiplier.is_finite()) {
            return err("gas_price_multiplier", "must be at least 1");
        }
        if !(self.reward_scale > 0.0 && self.reward_scale.is_finite()) {
            return err("reward_scale", "must be positive");
        }
        if self.features.as_ref().is_some_and(Vec::is_empty) {
            return err("features", "must list at least one column");
        }
        Ok(())
    }

    pub fn n_actions(&self) -> usize {
        self.buy_fractions.len() + 2
    }
}

/// The traded pool and the feature columns of an environment over `market`.
pub fn plan(market: &Market, env: &TradingEnv, cfg: &EnvConfig) -> Result<(usize, Vec<String>)> {
    let pool = dexlab_strategy::reversion::traded_pool(market, env)
        .ok_or_else(|| ModelError::Env("no pool trades the quote token".into()))?;
    let labels = market_labels(&market.pools);
    let columns = match &cfg.features {
        Some(c) => c.clone(),
        None => {
            let l = &labels[pool];
            let mut c: Vec<String> = ["ret_1", "ret_5", "ret_20", "vol_20", "vol_100"]
                .iter()
                .map(|f| format!("{l}__{f}"))
                .collect();
            let me = &market.pools[pool];
            for (j, other) in market.pools.iter().enumerate() {
                if j != pool && other.has_tokens(me.token0, me.token1) {
                    let (a, b) = if j < pool { (j, pool) } else { (pool, j) };
                    c.push(format!("spread_bps__{}__{}", labels[a], labels[b]));
                }
            }
            c
        }
    };
    // Fails here, with the column names, if a column cannot be computed online.
    OnlineFeatures::new(&market.pools, &columns, 1).map_err(|e| ModelError::Env(e.to_string()))?;
    Ok((pool, columns))
}

/// Per-column mean and standard deviation of the online features over the training window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObsStats {
    pub columns: Vec<String>,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// Rows the statistics were fitted on.
    pub rows: u64,
}

/// A strategy that only measures [`ObsStats`]: run it over the training window first.
#[derive(Debug)]
pub struct StatsCollector {
    features: OnlineFeatures,
    n: u64,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
}

impl StatsCollector {
    pub fn new(market: &Market, columns: &[String]) -> Result<Self> {
        let features = OnlineFeatures::new(&market.pools, columns, 1)
            .map_err(|e| ModelError::Env(e.to_string()))?;
        Ok(Self {
            features,
            n: 0,
            sum: vec![0.0; columns.len()],
            sum_sq: vec![0.0; columns.len()],
        })
    }

    pub fn finish(self) -> Result<ObsStats> {
        if self.n < 2 {
            return Err(ModelError::Env(format!(
                "only {} blocks of the training window have every feature ({}); use a longer window",
                self.n,
                self.features.columns().join(", ")
            )));
        }
        let n = self.n as f64;
        let mean: Vec<f64> = self.sum.iter().map(|s| s / n).collect();
        let std = self
            .sum_sq
            .iter()
            .zip(&mean)
            .map(|(sq, m)| {
                ((sq / n - m * m).max(0.0) * n / (n - 1.0))
                    .sqrt()
                    .max(1e-12)
            })
            .collect();
        Ok(ObsStats {
            columns: self.features.columns().to_vec(),
            mean,
            std,
            rows: self.n,
        })
    }
}

impl Strategy for StatsCollector {
    fn name(&self) -> &'static str {
        "rl-observation-stats"
    }

    fn on_block(&mut self, market: &Market, _: &Context<'_>, _: &mut Vec<Action>) {
        self.features.on_block(market);
        let Some(row) = self.features.last_row() else {
            return;
        };
        if row.iter().all(|v| v.is_finite()) {
            self.n += 1;
            for (i, v) in row.iter().enumerate() {
                self.sum[i] += v;
                self.sum_sq[i] += v * v;
            }
        }
    }
}

/// Counters of one episode.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpisodeStats {
    pub decisions: u64,
    /// How often each action was chosen.
    pub actions: Vec<u64>,
    pub bundles: u64,
    pub reward: f64,
}

/// How the agent chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Exploratory actions and learning.
    Train,
    /// The deterministic policy, no learning.
    Greedy,
    /// Uniformly random actions from a seed: the "no skill" baseline.
    Random(u64),
}

/// An agent trading as a strategy.
pub struct AgentStrategy<'a> {
    agent: &'a mut dyn Agent,
    mode: Mode,
    cfg: EnvConfig,
    stats: ObsStats,
    features: OnlineFeatures,
    pool: usize,
    base: Address,
    quote: Address,
    base_dec: u8,
    quote_dec: u8,
    capital: f64,
    end_block: u64,
    plan: SwapPlan,
    pending: bool,
    /// Equity at the last decision, while its transition is open.
    open: Option<f64>,
    rng: u64,
    pub episode: EpisodeStats,
    /// The first agent error; the strategy stops deciding after it.
    pub error: Option<ModelError>,
}

/// Where an [`AgentStrategy`] trades: the environment and its settings, the observation
/// statistics (from the training blocks), the starting capital and the window's last block.
#[derive(Debug, Clone, Copy)]
pub struct Episode<'s> {
    pub env: &'s TradingEnv,
    pub cfg: &'s EnvConfig,
    pub stats: &'s ObsStats,
    /// The starting quote balance (raw units), for the reward's scale.
    pub capital: U256,
    /// The last block of the window.
    pub end_block: u64,
}

impl<'a> AgentStrategy<'a> {
    /// `agent` in `mode`, from the market state at the window's start.
    pub fn new(
        agent: &'a mut dyn Agent,
        mode: Mode,
        market: &Market,
        episode: Episode<'_>,
    ) -> Result<Self> {
        let Episode {
            env,
            cfg,
            stats,
            capital,
            end_block,
        } = episode;
        let (pool, columns) = plan(market, env, cfg)?;
        if columns != stats.columns {
            return Err(ModelError::Env(format!(
                "the observation statistics are for columns {:?}, the environment reads {:?}",
                stats.columns, columns
            )));
        }
        let features = OnlineFeatures::new(&market.pools, &columns, cfg.window)
            .map_err(|e| ModelError::Env(e.to_string()))?;
        let m = &market.pools[pool];
        let (base, base_dec, quote_dec) = if m.token0 == env.quote {
            (m.token1, m.decimals1, m.decimals0)
        } else {
            (m.token0, m.decimals0, m.decimals1)
        };
        Ok(Self {
            agent,
            mode,
            stats: stats.clone(),
            features,
            pool,
            base,
            quote: env.quote,
            base_dec,
            quote_dec,
            capital: to_human(capital, quote_dec).max(1e-18),
            end_block,
            plan: SwapPlan {
                slippage_bps: cfg.max_slippage_bps,
                gas_multiplier: cfg.gas_price_multiplier,
                max_gas_bps: None,
            },
            pending: false,
            open: None,
            rng: match mode {
                Mode::Random(seed) => seed ^ 0x5DEE_CE66_D1CE_F00D,
                _ => 0,
            },
            episode: EpisodeStats {
                actions: vec![0; cfg.n_actions()],
                ..Default::default()
            },
            cfg: cfg.clone(),
            error: None,
        })
    }

    /// Observation size for `columns` and `window`.
    pub fn obs_dim(columns: usize, window: usize) -> usize {
        columns * window + 1
    }

    fn observation(&self, market: &Market, ctx: &Context<'_>, equity: f64) -> Option<Vec<f32>> {
        let rows = self.features.window()?;
        let mut obs = Vec::with_capacity(Self::obs_dim(self.stats.columns.len(), rows.len()));
        for row in rows {
            for (c, v) in row.iter().enumerate() {
                // Clipped: one extreme block must not saturate the network.
                obs.push(((v - self.stats.mean[c]) / self.stats.std[c]).clamp(-10.0, 10.0) as f32);
            }
        }
        let held = to_human(ctx.balance(self.base), self.base_dec)
            * market.price_of(self.pool, self.base)?;
        obs.push(if equity > 0.0 {
            (held / equity) as f32
        } else {
            0.0
        });
        Some(obs)
    }

    fn equity(&self, market: &Market, ctx: &Context<'_>) -> Option<f64> {
        // The reference price: marking at the mid our own buy just lifted would pay the agent
        // for its own price impact.
        let price = ctx.mark_price_of(market, self.pool, self.base)?;
        Some(
            to_human(ctx.balance(self.quote), self.quote_dec)
                + to_human(ctx.balance(self.base), self.base_dec) * price,
        )
    }

    fn choose(&mut self, obs: &[f32]) -> Result<usize> {
        match self.mode {
            Mode::Train => self.agent.act(obs),
            Mode::Greedy => self.agent.greedy(obs),
            Mode::Random(_) => {
                // splitmix64: a seeded stream independent of everything else.
                self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = self.rng;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                Ok((z % self.cfg.n_actions() as u64) as usize)
            }
        }
    }
}

impl Strategy for AgentStrategy<'_> {
    fn name(&self) -> &'static str {
        "rl-agent"
    }

    fn on_block(&mut self, market: &Market, ctx: &Context<'_>, out: &mut Vec<Action>) {
        self.features.on_block(market);
        let block = market.block.number;
        let terminal = block >= self.end_block;
        if self.error.is_some() || (self.pending && !terminal) {
            return;
        }
        if !terminal && !block.is_multiple_of(self.cfg.decide_every) {
            return;
        }
        let Some(equity) = self.equity(market, ctx) else {
            return;
        };
        let obs = self.observation(market, ctx, equity);
        if let Some(before) = self.open {
            // The last transition closes here, at a decision point or at the end. The end of
            // the data is a time limit, not a terminal state (see `StepEnd`); only when no
            // observation can be formed there is nothing to bootstrap from.
            let (next, end) = match (&obs, terminal) {
                (Some(o), false) => (o.clone(), StepEnd::Continues),
                (Some(o), true) => (o.clone(), StepEnd::Truncated),
                (None, true) => (
                    vec![0.0; Self::obs_dim(self.stats.columns.len(), self.cfg.window)],
                    StepEnd::Terminal,
                ),
                (None, false) => return,
            };
            let reward = ((equity - before) / self.capital * 1e4 * self.cfg.reward_scale) as f32;
            self.episode.reward += f64::from(reward);
            if self.mode == Mode::Train
                && let Err(e) = self.agent.feedback(reward, &next, end)
            {
                self.error = Some(e);
                return;
            }
            self.open = None;
        }
        if terminal {
            return;
        }
        let Some(obs) = obs else { return };
        let action = match self.choose(&obs) {
            Ok(a) => a,
            Err(e) => {
                self.error = Some(e);
                return;
            }
        };
        self.episode.decisions += 1;
        self.episode.actions[action] += 1;
        self.open = Some(equity);
        let k = self.cfg.buy_fractions.len();
        let enter = (1..=k)
            .contains(&action)
            .then(|| self.cfg.buy_fractions[action - 1]);
        let bundle = self.plan.long_flat(
            market,
            ctx,
            self.pool,
            self.base,
            self.quote,
            enter,
            action == k + 1,
        );
        if let Some(b) = bundle {
            self.pending = true;
            self.episode.bundles += 1;
            out.push(Action::Submit(b));
        }
    }

    fn on_fill(&mut self, _fill: &Fill) {
        self.pending = false;
    }
}
