//! Agent hyperparameters: TOML files whose keys are all optional, checked once at load so the
//! agents never re-validate.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::AgentKind;
use crate::{ModelError, Result};

/// DQN hyperparameters. Every key is optional:
///
/// ```toml
/// hidden = [64, 64]            # Q-network hidden layers (ReLU)
/// lr = 0.001                   # Adam learning rate
/// gamma = 0.99                 # discount
/// batch_size = 32              # transitions per gradient step
/// buffer_size = 50000          # replay capacity; the oldest transition is overwritten
/// learning_starts = 1000       # transitions collected before the first gradient step
/// train_every = 1              # transitions between gradient steps
/// target_update_every = 1000   # transitions between hard copies into the target network
/// epsilon_start = 1.0
/// epsilon_end = 0.05
/// epsilon_decay_steps = 10000  # linear from start to end over this many transitions
/// loss = "huber"               # huber (delta 1) | mse
/// double_dqn = true            # online network picks the next action, target evaluates it
/// grad_clip = 10.0             # per-parameter gradient norm; 0 = off
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DqnConfig {
    pub hidden: Vec<usize>,
    pub lr: f64,
    pub gamma: f64,
    pub batch_size: usize,
    pub buffer_size: usize,
    pub learning_starts: usize,
    pub train_every: usize,
    pub target_update_every: usize,
    pub epsilon_start: f64,
    pub epsilon_end: f64,
    pub epsilon_decay_steps: usize,
    pub loss: DqnLoss,
    pub double_dqn: bool,
    pub grad_clip: f64,
}

/// The TD-error loss; Huber keeps the gradient bounded when rewards are large.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DqnLoss {
    Huber,
    Mse,
}

impl Default for DqnConfig {
    fn default() -> Self {
        Self {
            hidden: vec![64, 64],
            lr: 1e-3,
            gamma: 0.99,
            batch_size: 32,
            buffer_size: 50_000,
            learning_starts: 1_000,
            train_every: 1,
            target_update_every: 1_000,
            epsilon_start: 1.0,
            epsilon_end: 0.05,
            epsilon_decay_steps: 10_000,
            loss: DqnLoss::Huber,
            double_dqn: true,
            grad_clip: 10.0,
        }
    }
}

impl DqnConfig {
    /// Parse and validate; `file` names the source in errors.
    pub fn from_toml(text: &str, file: &str) -> Result<Self> {
        parse(text, file, Self::validate)
    }

    pub fn load(path: &Path) -> Result<Self> {
        Self::from_toml(&read(path)?, &path.display().to_string())
    }

    /// Range checks; every error names the key.
    pub fn validate(&self, file: &str) -> Result<()> {
        let err = |key: &str, msg: &str| Err(ModelError::config(file, key, msg));
        check_common(file, &self.hidden, self.lr, self.gamma, self.grad_clip)?;
        bounded(file, "batch_size", self.batch_size, 1, MAX_BUFFER)?;
        bounded(file, "buffer_size", self.buffer_size, 1, MAX_BUFFER)?;
        if self.buffer_size < self.batch_size {
            return err("buffer_size", "must be at least batch_size");
        }
        bounded(file, "train_every", self.train_every, 1, MAX_STEPS)?;
        bounded(
            file,
            "target_update_every",
            self.target_update_every,
            1,
            MAX_STEPS,
        )?;
        for (key, v) in [
            ("epsilon_start", self.epsilon_start),
            ("epsilon_end", self.epsilon_end),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return err(key, "must be in [0, 1]");
            }
        }
        Ok(())
    }

    /// Exploration rate after `steps` transitions.
    pub fn epsilon(&self, steps: u64) -> f64 {
        let frac = if self.epsilon_decay_steps == 0 {
            1.0
        } else {
            (steps as f64 / self.epsilon_decay_steps as f64).min(1.0)
        };
        self.epsilon_start + (self.epsilon_end - self.epsilon_start) * frac
    }
}

/// PPO hyperparameters. Every key is optional:
///
/// ```toml
/// hidden = [64, 64]          # actor and critic hidden layers (ReLU), separate networks
/// lr = 0.0003                # Adam learning rate
/// gamma = 0.99               # discount
/// gae_lambda = 0.95          # GAE λ: 0 = one-step TD advantages, 1 = Monte Carlo
/// n_steps = 2048             # transitions per rollout, then one update
/// batch_size = 64            # minibatch size within an update
/// epochs = 10                # passes over the rollout per update
/// clip_range = 0.2           # ε of the clipped surrogate objective
/// value_coef = 0.5           # weight of the critic's squared error
/// entropy_coef = 0.0         # weight of the entropy bonus
/// normalize_advantage = true # zero mean, unit std over the whole rollout
/// grad_clip = 0.5            # per-parameter gradient norm; 0 = off
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PpoConfig {
    pub hidden: Vec<usize>,
    pub lr: f64,
    pub gamma: f64,
    pub gae_lambda: f64,
    pub n_steps: usize,
    pub batch_size: usize,
    pub epochs: usize,
    pub clip_range: f64,
    pub value_coef: f64,
    pub entropy_coef: f64,
    pub normalize_advantage: bool,
    pub grad_clip: f64,
}

impl Default for PpoConfig {
    fn default() -> Self {
        Self {
            hidden: vec![64, 64],
            lr: 3e-4,
            gamma: 0.99,
            gae_lambda: 0.95,
            n_steps: 2048,
            batch_size: 64,
            epochs: 10,
            clip_range: 0.2,
            value_coef: 0.5,
            entropy_coef: 0.0,
            normalize_advantage: true,
            grad_clip: 0.5,
        }
    }
}

impl PpoConfig {
    /// Parse and validate; `file` names the source in errors.
    pub fn from_toml(text: &str, file: &str) -> Result<Self> {
        parse(text, file, Self::validate)
    }

    pub fn load(path: &Path) -> Result<Self> {
        Self::from_toml(&read(path)?, &path.display().to_string())
    }

    /// Range checks; every error names the key.
    pub fn validate(&self, file: &str) -> Result<()> {
        let err = |key: &str, msg: &str| Err(ModelError::config(file, key, msg));
        check_common(file, &self.hidden, self.lr, self.gamma, self.grad_clip)?;
        if !(0.0..=1.0).contains(&self.gae_lambda) {
            return err("gae_lambda", "must be in [0, 1]");
        }
        bounded(file, "n_steps", self.n_steps, 1, MAX_BUFFER)?;
        if self.normalize_advantage && self.n_steps < 2 {
            return err("n_steps", "must be at least 2 to normalise advantages");
        }
        if !(1..=self.n_steps).contains(&self.batch_size) {
            return err("batch_size", "must be between 1 and n_steps");
        }
        bounded(file, "epochs", self.epochs, 1, 10_000)?;
        if !(self.clip_range > 0.0 && self.clip_range < 1.0) {
            return err("clip_range", "must be in (0, 1)");
        }
        for (key, v) in [
            ("value_coef", self.value_coef),
            ("entropy_coef", self.entropy_coef),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return err(key, "must be >= 0");
            }
        }
        Ok(())
    }
}

/// Either configuration, tagged by kind in `config.json` (`{"dqn": {…}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentConfig {
    Dqn(DqnConfig),
    Ppo(PpoConfig),
}

impl AgentConfig {
    pub fn kind(&self) -> AgentKind {
        match self {
            AgentConfig::Dqn(_) => AgentKind::Dqn,
            AgentConfig::Ppo(_) => AgentKind::Ppo,
        }
    }

    /// The defaults of `kind`.
    pub fn defaults(kind: AgentKind) -> Self {
        match kind {
            AgentKind::Dqn => AgentConfig::Dqn(DqnConfig::default()),
            AgentKind::Ppo => AgentConfig::Ppo(PpoConfig::default()),
        }
    }

    /// A TOML file of `kind`'s keys (the kind comes from the caller, e.g. a CLI flag).
    pub fn from_toml(kind: AgentKind, text: &str, file: &str) -> Result<Self> {
        Ok(match kind {
            AgentKind::Dqn => AgentConfig::Dqn(DqnConfig::from_toml(text, file)?),
            AgentKind::Ppo => AgentConfig::Ppo(PpoConfig::from_toml(text, file)?),
        })
    }

    pub fn load(kind: AgentKind, path: &Path) -> Result<Self> {
        Self::from_toml(kind, &read(path)?, &path.display().to_string())
    }

    pub fn validate(&self, file: &str) -> Result<()> {
        match self {
            AgentConfig::Dqn(c) => c.validate(file),
            AgentConfig::Ppo(c) => c.validate(file),
        }
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))
}

/// Unknown keys and wrong types fail in serde (its message names the key), ranges in `check`.
fn parse<T: DeserializeOwned>(
    text: &str,
    file: &str,
    check: impl Fn(&T, &str) -> Result<()>,
) -> Result<T> {
    let value: T = toml::from_str(text).map_err(|source| ModelError::Toml {
        path: file.into(),
        source,
    })?;
    check(&value, file)?;
    Ok(value)
}

/// Upper bounds on sizes: far above any useful agent, low enough that the replay buffer, a
/// rollout or a layer cannot ask for more memory than a machine has (which aborts the process).
pub const MAX_WIDTH: usize = 65_536;
pub const MAX_LAYERS: usize = 256;
pub const MAX_BUFFER: usize = 10_000_000;
pub const MAX_STEPS: usize = 1_000_000_000;

/// `Err` naming `key` unless `v` is in `lo..=hi`.
pub(crate) fn bounded(file: &str, key: &str, v: usize, lo: usize, hi: usize) -> Result<()> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(ModelError::config(
            file,
            key,
            format!("{v} must be between {lo} and {hi}"),
        ))
    }
}

fn check_common(file: &str, hidden: &[usize], lr: f64, gamma: f64, grad_clip: f64) -> Result<()> {
    let err = |key: &str, msg: &str| Err(ModelError::config(file, key, msg));
    if hidden.is_empty() || hidden.contains(&0) {
        return err("hidden", "must list at least one layer, each of size >= 1");
    }
    if let Some(w) = hidden.iter().find(|&&w| w > MAX_WIDTH) {
        return err(
            "hidden",
            &format!("a layer of {w} units: each must be at most {MAX_WIDTH}"),
        );
    }
    if hidden.len() > MAX_LAYERS {
        return err(
            "hidden",
            &format!("{} layers: at most {MAX_LAYERS}", hidden.len()),
        );
    }
    if !(lr > 0.0 && lr <= 1.0) {
        return err("lr", "must be in (0, 1]");
    }
    if !(0.0..=1.0).contains(&gamma) {
        return err("gamma", "must be in [0, 1]");
    }
    if !(grad_clip >= 0.0 && grad_clip.is_finite()) {
        return err("grad_clip", "must be >= 0 (0 = off)");
    }
    Ok(())
}
