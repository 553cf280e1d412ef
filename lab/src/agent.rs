//! A trading agent, reloaded from its directory by what the directory says it is.
//!
//! `dexlab rl train` writes an agent directory: the networks and `config.json` (`dexlab-models`,
//! which names the algorithm), and `env.json` ([`AgentEnv`]): the algorithm again, the trading
//! environment it was trained in (experiment and RL configs, the pool, the observation
//! statistics) and the dataset blocks it trained and is tested on. [`load_agent`] reads
//! `env.json`, loads the networks of the algorithm it names and checks that `config.json` agrees,
//! so a caller (the CLI's `rl eval`, the server, the live engine) gets a boxed agent and its
//! environment without knowing whether it is a DQN or a PPO.

use std::ops::Range;
use std::path::{Path, PathBuf};

use dexlab_evolve::backtest::ExecConfig;
use dexlab_evolve::config::ExperimentConfig;
use dexlab_models::rl::env::{AgentStrategy, Episode, Mode, ObsStats, RlConfig};
use dexlab_models::rl::{Agent, AgentKind};
use dexlab_store::{RegisteredKind, Store};
use dexlab_strategy::market::Market;
use serde::{Deserialize, Serialize};

use crate::error::{Context, LabError, Result, refuse};

/// The file of an agent directory that says what the agent is and where it trades.
pub const ENV_FILE: &str = "env.json";

/// `env.json` of an agent directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentEnv {
    pub dexlab_version: String,
    /// The algorithm; its networks are in the same directory.
    pub kind: AgentKind,
    pub seed: u64,
    pub dataset_hash: String,
    pub experiment: ExperimentConfig,
    pub rl: RlConfig,
    /// The pool it trades, as labelled in the market.
    pub pool: String,
    pub stats: ObsStats,
    /// Block indices of the tape.
    pub train: Range<usize>,
    pub test: Range<usize>,
    pub train_blocks: (u64, u64),
    pub test_blocks: (u64, u64),
}

impl AgentEnv {
    /// `env.json` of `dir`.
    pub fn read(dir: &Path) -> Result<AgentEnv> {
        let path = dir.join(ENV_FILE);
        let bytes = std::fs::read(&path)
            .map_err(|e| LabError::io(&path, e))
            .with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| LabError::json(path.display().to_string(), e))
            .with_context(|| format!("{}: not a dexlab rl file", path.display()))
    }
}

/// An agent with the environment it was trained in.
pub struct TradingAgent {
    pub dir: PathBuf,
    pub env: AgentEnv,
    pub agent: Box<dyn Agent>,
}

impl std::fmt::Debug for TradingAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TradingAgent")
            .field("dir", &self.dir)
            .field("kind", &self.env.kind)
            .field("pool", &self.env.pool)
            .finish_non_exhaustive()
    }
}

impl TradingAgent {
    pub fn kind(&self) -> AgentKind {
        self.env.kind
    }

    /// The agent as a strategy on `market`, trading until `end_block` with `exec`'s environment
    /// and capital; [`Mode::Greedy`] for its deterministic policy.
    pub fn strategy<'a>(
        &'a mut self,
        mode: Mode,
        market: &Market,
        exec: &'a ExecConfig,
        end_block: u64,
    ) -> Result<AgentStrategy<'a>> {
        Ok(AgentStrategy::new(
            self.agent.as_mut(),
            mode,
            market,
            Episode {
                env: &exec.env,
                cfg: &self.env.rl.env,
                stats: &self.env.stats,
                capital: exec.capital,
                end_block,
            },
        )?)
    }
}

/// The agent in `dir`, of whichever algorithm its `env.json` names.
pub fn load_agent(dir: &Path) -> Result<TradingAgent> {
    let env = AgentEnv::read(dir)?;
    let agent = dexlab_models::rl::load_agent(dir)
        .with_context(|| format!("loading the {} agent in {}", env.kind, dir.display()))?;
    if agent.kind() != env.kind {
        refuse!(
            "{}: env.json says {} but the networks are a {} agent",
            dir.display(),
            env.kind,
            agent.kind()
        );
    }
    Ok(TradingAgent {
        dir: dir.to_owned(),
        env,
        agent,
    })
}

/// The registered agent of this name or id, loaded from its directory.
pub async fn load_registered(store: &Store, name_or_id: &str) -> Result<TradingAgent> {
    let row = crate::registry::find(store, name_or_id).await?;
    if !matches!(row.model.kind, RegisteredKind::Agent(_)) {
        refuse!(
            "model {} `{}` is a {} model, not an RL agent",
            row.id,
            row.model.name,
            row.model.kind
        );
    }
    load_agent(Path::new(&row.model.dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent directory as `rl train` writes it: the networks of `networks`, and an env.json
    /// that says `says`.
    fn agent_dir(dir: &Path, networks: AgentKind, says: AgentKind) {
        let rl = RlConfig::default();
        let agent =
            dexlab_models::rl::new_agent(&rl.agent(networks), 4, rl.env.n_actions(), 7).unwrap();
        agent.save(dir).unwrap();
        let env = AgentEnv {
            dexlab_version: "test".into(),
            kind: says,
            seed: 7,
            dataset_hash: "h".into(),
            experiment: ExperimentConfig::default(),
            rl,
            pool: "pool".into(),
            stats: ObsStats::default(),
            train: 0..200,
            test: 200..300,
            train_blocks: (1, 200),
            test_blocks: (201, 300),
        };
        std::fs::write(dir.join(ENV_FILE), serde_json::to_vec(&env).unwrap()).unwrap();
    }

    /// The caller names no algorithm: the directory says which, and both files must agree.
    #[test]
    fn an_agent_is_loaded_by_what_its_directory_says() {
        for kind in AgentKind::ALL {
            let dir = tempfile::tempdir().unwrap();
            agent_dir(dir.path(), kind, kind);
            let a = load_agent(dir.path()).unwrap();
            assert_eq!((a.kind(), a.agent.kind()), (kind, kind));
            assert_eq!(a.env.test_blocks, (201, 300));
            assert_eq!(
                crate::registry::dir_kind(dir.path()).unwrap(),
                RegisteredKind::Agent(kind)
            );
        }
        let dir = tempfile::tempdir().unwrap();
        agent_dir(dir.path(), AgentKind::Dqn, AgentKind::Ppo);
        let e = crate::error_chain(&load_agent(dir.path()).unwrap_err());
        assert!(
            e.contains("env.json says ppo") && e.contains("dqn agent"),
            "{e}"
        );
        let e = crate::error_chain(&load_agent(Path::new("/nonexistent/agent")).unwrap_err());
        assert!(e.contains("reading /nonexistent/agent/env.json"), "{e}");
    }
}
