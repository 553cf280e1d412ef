//! Reinforcement-learning agents (DQN and PPO) over discrete actions, driven by the caller.
//!
//! The agents know nothing about markets: the backtester (or a test) owns the environment and
//! pushes into the agent, one decision at a time: [`Agent::act`] with an observation, then
//! [`Agent::feedback`] with that action's reward, the next observation and how the step ended
//! ([`StepEnd`]: the episode continues, reached a terminal state, or was cut by a time limit). Learning happens inside `feedback` (a replay-buffer update for DQN, a PPO
//! update once a rollout is full), so a strategy callback can host an agent without an
//! `env.step()` loop. [`Agent::greedy`] is the deterministic policy for evaluation, also
//! available on an agent reloaded with [`load_agent`].
//!
//! # Determinism
//! Every random draw comes from the seed: the initial weights from burn's generator, seeded
//! under the crate's training lock while the networks are built (and their lazily initialised
//! parameters forced), and everything else (ε-greedy draws, replay sampling, PPO action
//! sampling, minibatch shuffles) from the agent's own ChaCha8 generator. Training never draws
//! from burn's generator afterwards, so agents need not hold the lock while they learn and may
//! run on several threads. On the CPU backend the same seed and the same sequence of calls give
//! bit-identical weights; [`Agent::save`] renumbers parameter ids so that the files are
//! byte-identical too.
//!
//! # Saved agent directory
//! | file | content |
//! | --- | --- |
//! | `config.json` | kind, observation size, number of actions, seed, config, counters |
//! | `q.bpk` (DQN) | the online Q-network (the target network is a copy of it on reload) |
//! | `policy.bpk` (PPO) | actor and critic |
//!
//! A reloaded agent acts and evaluates like the saved one; if trained further it starts with an
//! empty replay buffer or rollout, fresh Adam moments and its generator re-seeded from
//! `seed + steps`.

mod config;
pub mod dqn;
pub mod env;
mod net;
pub mod ppo;
#[cfg(test)]
mod tests;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::artifact::{read_json, write_json};
use crate::{ModelError, Result};

pub use config::{AgentConfig, DqnConfig, DqnLoss, PpoConfig};
pub use dqn::DqnAgent;
pub use ppo::{PpoAgent, gae};

/// Kind, shapes, seed, config and counters of a saved agent: read first, to know what to build.
pub const AGENT_CONFIG: &str = "config.json";
/// A saved DQN's online Q-network.
pub const DQN_WEIGHTS: &str = "q.bpk";
/// A saved PPO's actor and critic, one module.
pub const PPO_WEIGHTS: &str = "policy.bpk";

/// One agent, driven by the caller's environment.
///
/// Calls alternate: `act`, `feedback`, `act`, … An error from `act` or `feedback` leaves the
/// agent as it was before the call, except a diverged update (non-finite loss), after which the
/// agent should be discarded.
pub trait Agent: Send {
    fn kind(&self) -> AgentKind;

    /// Training-time action for `obs` (exploratory: ε-greedy for DQN, sampled for PPO), in
    /// `0..n_actions`. Remembers `obs` and the action until [`feedback`](Agent::feedback).
    fn act(&mut self, obs: &[f32]) -> Result<usize>;

    /// Completes the transition started by the last `act`: its reward, the observation that
    /// followed, and how the step ended. May run gradient steps.
    fn feedback(&mut self, reward: f32, next_obs: &[f32], end: StepEnd) -> Result<()>;

    /// Deterministic action for evaluation (argmax Q, or the most probable action); records
    /// nothing and draws nothing.
    fn greedy(&self, obs: &[f32]) -> Result<usize>;

    fn stats(&self) -> AgentStats;

    /// Writes the networks and `config.json` into `dir` (created if missing, files replaced).
    fn save(&self, dir: &Path) -> Result<()>;
}

/// How a transition ended, for what the learner may bootstrap past it.
///
/// A time limit is not a terminal state (Pardo et al., "Time Limits in Reinforcement Learning",
/// 2018): when the data run out the position is still marked to market and the market goes on,
/// so the value of `next_obs` is bootstrapped as for any other step; only the episode's
/// bookkeeping ends. Treating the cut as terminal would teach the agent that the last decision
/// before the end of the data is worth its immediate reward only, a state it cannot observe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepEnd {
    /// The episode goes on from `next_obs`.
    Continues,
    /// The episode reached a terminal state: nothing follows, nothing is bootstrapped.
    Terminal,
    /// The episode was cut (end of the data, a step limit): `next_obs` is a real state and its
    /// value is bootstrapped, but the next `act` starts a new episode.
    Truncated,
}

impl StepEnd {
    /// Whether the next `act` starts a new episode.
    pub fn ends_episode(self) -> bool {
        self != StepEnd::Continues
    }
}

/// Which algorithm: shared with the store and the lab (`dexlab-types`), re-exported here.
pub use dexlab_types::AgentKind;

/// A snapshot of an agent's training, for logs and reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStats {
    pub kind: AgentKind,
    /// Completed transitions (calls to `feedback`).
    pub steps: u64,
    pub episodes: u64,
    /// Gradient steps taken.
    pub updates: u64,
    /// Loss of the last gradient step (DQN: TD loss; PPO: the mean total loss of the last
    /// update).
    pub last_loss: Option<f32>,
    /// DQN: the exploration rate the next `act` uses.
    pub epsilon: Option<f32>,
    /// PPO: mean policy entropy over the last update, in nats.
    pub entropy: Option<f32>,
    /// Mean return of the last 100 completed episodes.
    pub mean_episode_reward: Option<f64>,
    /// Return of the last completed episode.
    pub last_episode_reward: Option<f64>,
}

/// A new agent of `config`'s kind for observations of `obs_dim` values and `n_actions` actions.
pub fn new_agent(
    config: &AgentConfig,
    obs_dim: usize,
    n_actions: usize,
    seed: u64,
) -> Result<Box<dyn Agent>> {
    Ok(match config {
        AgentConfig::Dqn(c) => Box::new(DqnAgent::new(c.clone(), obs_dim, n_actions, seed)?),
        AgentConfig::Ppo(c) => Box::new(PpoAgent::new(c.clone(), obs_dim, n_actions, seed)?),
    })
}

/// Reloads an agent written by [`Agent::save`], of either kind.
pub fn load_agent(dir: &Path) -> Result<Box<dyn Agent>> {
    let file: AgentFile = read_json(&dir.join(AGENT_CONFIG))?;
    Ok(match file.config {
        AgentConfig::Dqn(_) => Box::new(DqnAgent::load(dir)?),
        AgentConfig::Ppo(_) => Box::new(PpoAgent::load(dir)?),
    })
}

/// `config.json` of a saved agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AgentFile {
    pub dexlab_version: String,
    pub obs_dim: usize,
    pub n_actions: usize,
    pub seed: u64,
    pub config: AgentConfig,
    pub progress: net::Progress,
}

impl AgentFile {
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        write_json(&dir.join(AGENT_CONFIG), self)
    }

    /// `config.json` of `dir`, which must hold an agent of `kind`.
    pub fn read(dir: &Path, kind: AgentKind) -> Result<Self> {
        let path = dir.join(AGENT_CONFIG);
        let file: AgentFile = read_json(&path)?;
        if file.config.kind() != kind {
            return Err(ModelError::Data {
                path,
                message: format!("holds a {} agent, not {kind}", file.config.kind()),
            });
        }
        Ok(file)
    }
}

/// Checks shared by both constructors.
fn check_shape(obs_dim: usize, n_actions: usize) -> Result<()> {
    if obs_dim == 0 {
        return Err(ModelError::config(
            "options",
            "obs_dim",
            "must be at least 1",
        ));
    }
    if n_actions < 2 {
        return Err(ModelError::config(
            "options",
            "n_actions",
            "must be at least 2",
        ));
    }
    Ok(())
}
