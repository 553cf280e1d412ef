//! Deep Q-learning (Mnih et al. 2015) with an optional double-DQN target (van Hasselt et al.
//! 2016): an MLP Q-network, a uniform replay buffer, a target network refreshed by hard copy,
//! and linear ε-greedy exploration.

use std::path::Path;

use burn::nn::loss::{HuberLossConfig, MseLoss, Reduction};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::net::{
    MlpNet, Progress, adam, argmax, check_obs, load_module, matrix, one_hot, save_module,
    seeded_init, to_vec,
};
use super::{
    Agent, AgentConfig, AgentFile, AgentKind, AgentStats, DQN_WEIGHTS, DqnConfig, DqnLoss, StepEnd,
    check_shape,
};
use crate::{Backend, ModelError, Result};

/// A DQN agent; see [`Agent`] for how to drive it.
pub struct DqnAgent {
    config: DqnConfig,
    obs_dim: usize,
    n_actions: usize,
    seed: u64,
    /// Plain CPU device: action selection and targets.
    device: Device,
    /// The same device with autodiff: gradient steps.
    ad: Device,
    /// Online network, on `ad`.
    q: MlpNet,
    /// Target network, a validation copy of `q` on `device`.
    target: MlpNet,
    optim: ModuleOptimizer,
    replay: Replay,
    /// ε draws, random actions, replay sampling.
    rng: ChaCha8Rng,
    /// Observation and action of the `act` awaiting its `feedback`.
    pending: Option<(Vec<f32>, usize)>,
    progress: Progress,
}

impl DqnAgent {
    /// A new agent; the Q-network's initial weights come from `seed` (see the module docs of
    /// [`super`] on the training lock).
    pub fn new(config: DqnConfig, obs_dim: usize, n_actions: usize, seed: u64) -> Result<Self> {
        config.validate("options")?;
        check_shape(obs_dim, n_actions)?;
        let device = Backend::Flex.device()?;
        let ad = device.clone().autodiff();
        let q = seeded_init(seed, &ad, || {
            MlpNet::new(obs_dim, &config.hidden, n_actions, &ad)
        });
        Ok(Self {
            target: q.valid(),
            q,
            optim: adam(config.grad_clip),
            replay: Replay::new(config.buffer_size, obs_dim),
            rng: ChaCha8Rng::seed_from_u64(seed),
            pending: None,
            progress: Progress::default(),
            config,
            obs_dim,
            n_actions,
            seed,
            device,
            ad,
        })
    }

    /// Reloads an agent written by [`Agent::save`].
    pub fn load(dir: &Path) -> Result<Self> {
        let file = AgentFile::read(dir, AgentKind::Dqn)?;
        let AgentConfig::Dqn(config) = file.config else {
            unreachable!("AgentFile::read checked the kind")
        };
        let mut agent = Self::new(config, file.obs_dim, file.n_actions, file.seed)?;
        agent.q = load_module(agent.q, &dir.join(DQN_WEIGHTS))?;
        agent.target = agent.q.valid();
        agent.rng = ChaCha8Rng::seed_from_u64(file.seed.wrapping_add(file.progress.steps));
        agent.progress = file.progress;
        Ok(agent)
    }

    /// The hyperparameters, e.g. to record next to a backtest's results.
    pub fn config(&self) -> &DqnConfig {
        &self.config
    }

    /// Q-values of the online network for one observation: what `greedy` takes the argmax of,
    /// for inspection and logging.
    pub fn q_values(&self, obs: &[f32]) -> Result<Vec<f32>> {
        check_obs(obs, self.obs_dim, self.progress.steps, "obs")?;
        Ok(self.q_row(obs))
    }

    pub(super) fn q_row(&self, obs: &[f32]) -> Vec<f32> {
        let x = matrix(obs.to_vec(), 1, self.obs_dim, &self.device);
        to_vec(self.q.valid().forward(x)) // [1, n_actions]
    }

    /// One gradient step on a uniformly sampled batch.
    fn update(&mut self) -> Result<()> {
        let (b, n, dim) = (self.config.batch_size, self.n_actions, self.obs_dim);
        let idx: Vec<usize> = (0..b)
            .map(|_| self.rng.random_range(0..self.replay.len()))
            .collect();
        let batch = self.replay.batch(&idx);
        let next = matrix(batch.next_obs, b, dim, &self.device);
        let next_target = to_vec(self.target.forward(next.clone())); // [b, n]
        // Double DQN: the online network chooses the next action, the target network values it.
        let next_online = self
            .config
            .double_dqn
            .then(|| to_vec(self.q.valid().forward(next)));
        let gamma = self.config.gamma as f32;
        let y: Vec<f32> = (0..b)
            .map(|i| {
                let row = &next_target[i * n..(i + 1) * n];
                let a = match &next_online {
                    Some(online) => argmax(&online[i * n..(i + 1) * n]),
                    None => argmax(row),
                };
                let bootstrap = if batch.terminal[i] {
                    0.0
                } else {
                    gamma * row[a]
                };
                batch.rewards[i] + bootstrap
            })
            .collect();
        let q_all = self.q.forward(matrix(batch.obs, b, dim, &self.ad)); // [b, n]
        let q_taken = (q_all * one_hot(&batch.actions, n, &self.ad)).sum_dim(1); // [b, 1]
        let y = matrix(y, b, 1, &self.ad);
        let loss = match self.config.loss {
            DqnLoss::Huber => HuberLossConfig::new(1.0)
                .init()
                .forward(q_taken, y, Reduction::Mean),
            DqnLoss::Mse => MseLoss::new().forward(q_taken, y, Reduction::Mean),
        };
        let value = loss.clone().into_scalar::<f32>();
        if !value.is_finite() {
            return Err(ModelError::Agent {
                step: self.progress.steps,
                message: format!("DQN diverged: TD loss is {value}"),
            });
        }
        let grads = GradientsParams::from_grads(loss.backward(), &self.q);
        self.q = self.optim.step(self.config.lr, self.q.clone(), grads);
        self.progress.updates += 1;
        self.progress.last_loss = Some(value);
        Ok(())
    }
}

/// The shape, seed, config and counters; not the weights.
impl std::fmt::Debug for DqnAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DqnAgent")
            .field("obs_dim", &self.obs_dim)
            .field("n_actions", &self.n_actions)
            .field("seed", &self.seed)
            .field("config", &self.config)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

impl Agent for DqnAgent {
    fn kind(&self) -> AgentKind {
        AgentKind::Dqn
    }

    fn act(&mut self, obs: &[f32]) -> Result<usize> {
        let step = self.progress.steps;
        if self.pending.is_some() {
            return Err(ModelError::Agent {
                step,
                message: "act called again before the feedback of the previous action".into(),
            });
        }
        check_obs(obs, self.obs_dim, step, "obs")?;
        // Both draws happen every step, so the stream does not depend on ε.
        let explore = self.rng.random::<f64>() < self.config.epsilon(step);
        let random_action = self.rng.random_range(0..self.n_actions);
        let action = if explore {
            random_action
        } else {
            argmax(&self.q_row(obs))
        };
        self.pending = Some((obs.to_vec(), action));
        Ok(action)
    }

    fn feedback(&mut self, reward: f32, next_obs: &[f32], end: StepEnd) -> Result<()> {
        let step = self.progress.steps;
        if self.pending.is_none() {
            return Err(ModelError::Agent {
                step,
                message: "feedback without a preceding act".into(),
            });
        }
        if !reward.is_finite() {
            return Err(ModelError::Agent {
                step,
                message: format!("reward is {reward}: rewards must be finite"),
            });
        }
        check_obs(next_obs, self.obs_dim, step, "next_obs")?;
        let (obs, action) = self.pending.take().expect("checked above");
        self.replay
            .push(&obs, action, reward, next_obs, end == StepEnd::Terminal);
        self.progress.record(reward, end.ends_episode());
        let steps = self.progress.steps;
        let cfg = &self.config;
        if steps >= cfg.learning_starts as u64
            && steps.is_multiple_of(cfg.train_every as u64)
            && self.replay.len() >= cfg.batch_size
        {
            self.update()?;
        }
        if steps.is_multiple_of(self.config.target_update_every as u64) {
            self.target = self.q.valid();
        }
        Ok(())
    }

    fn greedy(&self, obs: &[f32]) -> Result<usize> {
        Ok(argmax(&self.q_values(obs)?))
    }

    fn stats(&self) -> AgentStats {
        let p = &self.progress;
        AgentStats {
            kind: AgentKind::Dqn,
            steps: p.steps,
            episodes: p.episodes,
            updates: p.updates,
            last_loss: p.last_loss,
            epsilon: Some(self.config.epsilon(p.steps) as f32),
            entropy: None,
            mean_episode_reward: p.mean_episode_reward(),
            last_episode_reward: p.recent_returns.back().copied(),
        }
    }

    fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        save_module(&self.q, &dir.join(DQN_WEIGHTS))?;
        AgentFile {
            dexlab_version: env!("CARGO_PKG_VERSION").into(),
            obs_dim: self.obs_dim,
            n_actions: self.n_actions,
            seed: self.seed,
            config: AgentConfig::Dqn(self.config.clone()),
            progress: self.progress.clone(),
        }
        .write(dir)
    }
}

/// A fixed-capacity ring of transitions; once full, each push overwrites the oldest.
struct Replay {
    capacity: usize,
    dim: usize,
    obs: Vec<f32>,
    next_obs: Vec<f32>,
    actions: Vec<usize>,
    rewards: Vec<f32>,
    /// Ended in a terminal state: no bootstrap (a truncated step is not terminal).
    terminal: Vec<bool>,
    /// Slot of the next push once full.
    next: usize,
}

/// Sampled transitions, observations flattened row after row.
struct Batch {
    obs: Vec<f32>,
    next_obs: Vec<f32>,
    actions: Vec<usize>,
    rewards: Vec<f32>,
    terminal: Vec<bool>,
}

impl Replay {
    fn new(capacity: usize, dim: usize) -> Self {
        Self {
            capacity,
            dim,
            obs: Vec::new(),
            next_obs: Vec::new(),
            actions: Vec::new(),
            rewards: Vec::new(),
            terminal: Vec::new(),
            next: 0,
        }
    }

    fn len(&self) -> usize {
        self.actions.len()
    }

    fn push(&mut self, obs: &[f32], action: usize, reward: f32, next_obs: &[f32], terminal: bool) {
        if self.len() < self.capacity {
            self.obs.extend_from_slice(obs);
            self.next_obs.extend_from_slice(next_obs);
            self.actions.push(action);
            self.rewards.push(reward);
            self.terminal.push(terminal);
        } else {
            let (i, d) = (self.next, self.dim);
            self.obs[i * d..(i + 1) * d].copy_from_slice(obs);
            self.next_obs[i * d..(i + 1) * d].copy_from_slice(next_obs);
            self.actions[i] = action;
            self.rewards[i] = reward;
            self.terminal[i] = terminal;
        }
        self.next = (self.next + 1) % self.capacity;
    }

    fn batch(&self, idx: &[usize]) -> Batch {
        let d = self.dim;
        let rows = |v: &[f32]| {
            idx.iter()
                .flat_map(|&i| v[i * d..(i + 1) * d].to_vec())
                .collect()
        };
        Batch {
            obs: rows(&self.obs),
            next_obs: rows(&self.next_obs),
            actions: idx.iter().map(|&i| self.actions[i]).collect(),
            rewards: idx.iter().map(|&i| self.rewards[i]).collect(),
            terminal: idx.iter().map(|&i| self.terminal[i]).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_overwrites_the_oldest_once_full() {
        let mut r = Replay::new(3, 1);
        for i in 0..5 {
            r.push(&[i as f32], i, i as f32, &[i as f32 + 0.5], i == 4);
        }
        assert_eq!(r.len(), 3);
        // Slots hold transitions 3, 4, 2.
        assert_eq!(r.actions, vec![3, 4, 2]);
        let b = r.batch(&[2, 1]);
        assert_eq!(b.obs, vec![2.0, 4.0]);
        assert_eq!(b.next_obs, vec![2.5, 4.5]);
        assert_eq!(b.terminal, vec![false, true]);
    }

    #[test]
    fn epsilon_decays_linearly_then_stays() {
        let c = DqnConfig {
            epsilon_start: 1.0,
            epsilon_end: 0.1,
            epsilon_decay_steps: 100,
            ..DqnConfig::default()
        };
        assert_eq!(c.epsilon(0), 1.0);
        assert!((c.epsilon(50) - 0.55).abs() < 1e-12);
        assert!((c.epsilon(100) - 0.1).abs() < 1e-12);
        assert!((c.epsilon(10_000) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn protocol_errors_leave_the_agent_usable() {
        let cfg = DqnConfig {
            hidden: vec![4],
            ..DqnConfig::default()
        };
        let mut a = DqnAgent::new(cfg, 2, 3, 0).unwrap();
        assert!(a.feedback(0.0, &[0.0, 0.0], StepEnd::Continues).is_err());
        assert!(a.act(&[0.0]).is_err());
        let action = a.act(&[0.0, 1.0]).unwrap();
        assert!(action < 3);
        assert!(a.act(&[0.0, 1.0]).is_err());
        assert!(
            a.feedback(f32::INFINITY, &[0.0, 0.0], StepEnd::Continues)
                .is_err()
        );
        a.feedback(1.0, &[0.0, 0.0], StepEnd::Terminal).unwrap();
        assert_eq!(a.stats().steps, 1);
        assert_eq!(a.stats().mean_episode_reward, Some(1.0));
    }
}
