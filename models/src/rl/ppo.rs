//! Proximal policy optimisation (Schulman et al. 2017) with the clipped surrogate objective:
//! separate actor (softmax policy) and critic MLPs trained by one Adam, rollouts of `n_steps`
//! transitions, GAE(γ, λ) advantages (Schulman et al. 2016), an entropy bonus.

use std::path::Path;

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::net::{
    MlpNet, Progress, adam, argmax, check_obs, load_module, matrix, one_hot, save_module,
    seeded_init, to_vec, vector,
};
use super::{
    Agent, AgentConfig, AgentFile, AgentKind, AgentStats, PPO_WEIGHTS, PpoConfig, StepEnd,
    check_shape,
};
use crate::{Backend, ModelError, Result};

/// Generalised advantage estimates and returns (advantage + value) of one rollout.
///
/// `ends[t]` says how transition `t` ended. After a terminal step nothing is bootstrapped;
/// after a truncated one the critic's value of the observation that followed it,
/// `cut_values[t]`, is (the next transition in the rollout belongs to another episode, so in
/// both cases no advantage flows back across the boundary). `last_value` is the critic's value
/// of the observation that follows the last transition, used when the rollout itself cuts an
/// episode short.
///
/// ```text
/// V'_t = V_{t+1} (continues), 0 (terminal), cut_values[t] (truncated)
/// δ_t = r_t + γ V'_t − V_t,    A_t = δ_t + γ λ (1 − ended_t) A_{t+1}
/// ```
pub fn gae(
    rewards: &[f32],
    values: &[f32],
    ends: &[StepEnd],
    cut_values: &[f32],
    last_value: f32,
    gamma: f32,
    lambda: f32,
) -> (Vec<f32>, Vec<f32>) {
    let n = rewards.len();
    assert!(
        values.len() == n && ends.len() == n && cut_values.len() == n,
        "one value, one end and one cut value per reward"
    );
    let (gamma, lambda) = (f64::from(gamma), f64::from(lambda));
    let mut advantages = vec![0.0f32; n];
    let mut next_value = f64::from(last_value);
    let mut next_advantage = 0.0f64;
    for t in (0..n).rev() {
        let (bootstrap, live) = match ends[t] {
            StepEnd::Continues => (next_value, 1.0),
            StepEnd::Terminal => (0.0, 0.0),
            StepEnd::Truncated => (f64::from(cut_values[t]), 0.0),
        };
        let v = f64::from(values[t]);
        let delta = f64::from(rewards[t]) + gamma * bootstrap - v;
        next_advantage = delta + gamma * lambda * live * next_advantage;
        advantages[t] = next_advantage as f32;
        next_value = v;
    }
    let returns = advantages.iter().zip(values).map(|(a, v)| a + v).collect();
    (advantages, returns)
}

/// The two networks, one module so that one optimizer steps both and one file holds both.
#[derive(Module, Debug)]
pub struct ActorCritic {
    /// Logits over actions.
    actor: MlpNet,
    /// State value, one output.
    critic: MlpNet,
}

/// A PPO agent; see [`Agent`] for how to drive it.
pub struct PpoAgent {
    config: PpoConfig,
    obs_dim: usize,
    n_actions: usize,
    seed: u64,
    /// Plain CPU device: acting and bootstrapping.
    device: Device,
    /// The same device with autodiff: updates.
    ad: Device,
    /// On `ad`.
    net: ActorCritic,
    optim: ModuleOptimizer,
    /// Action sampling and minibatch shuffles.
    rng: ChaCha8Rng,
    /// The `act` awaiting its `feedback`.
    pending: Option<Step>,
    rollout: Vec<Step>,
    progress: Progress,
}

/// One transition of the rollout, with what the policy said when it acted.
#[derive(Debug, Clone)]
struct Step {
    obs: Vec<f32>,
    action: usize,
    log_prob: f32,
    value: f32,
    reward: f32,
    end: StepEnd,
    /// The critic's value of the observation after a truncated step (else unused).
    cut_value: f32,
}

impl PpoAgent {
    /// A new agent; the networks' initial weights come from `seed` (see the module docs of
    /// [`super`] on the training lock).
    pub fn new(config: PpoConfig, obs_dim: usize, n_actions: usize, seed: u64) -> Result<Self> {
        config.validate("options")?;
        check_shape(obs_dim, n_actions)?;
        let device = Backend::Flex.device()?;
        let ad = device.clone().autodiff();
        let net = seeded_init(seed, &ad, || ActorCritic {
            actor: MlpNet::new(obs_dim, &config.hidden, n_actions, &ad),
            critic: MlpNet::new(obs_dim, &config.hidden, 1, &ad),
        });
        Ok(Self {
            net,
            optim: adam(config.grad_clip),
            rng: ChaCha8Rng::seed_from_u64(seed),
            pending: None,
            rollout: Vec::with_capacity(config.n_steps),
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
        let file = AgentFile::read(dir, AgentKind::Ppo)?;
        let AgentConfig::Ppo(config) = file.config else {
            unreachable!("AgentFile::read checked the kind")
        };
        let mut agent = Self::new(config, file.obs_dim, file.n_actions, file.seed)?;
        agent.net = load_module(agent.net, &dir.join(PPO_WEIGHTS))?;
        agent.rng = ChaCha8Rng::seed_from_u64(file.seed.wrapping_add(file.progress.steps));
        agent.progress = file.progress;
        Ok(agent)
    }

    /// The hyperparameters, e.g. to record next to a backtest's results.
    pub fn config(&self) -> &PpoConfig {
        &self.config
    }

    /// Action probabilities and state value for one observation.
    pub fn policy(&self, obs: &[f32]) -> Result<(Vec<f32>, f32)> {
        check_obs(obs, self.obs_dim, self.progress.steps, "obs")?;
        let (log_probs, value) = self.evaluate(obs);
        Ok((log_probs.iter().map(|l| l.exp()).collect(), value))
    }

    /// Log-probabilities of the actions and the value of `obs` (already checked).
    fn evaluate(&self, obs: &[f32]) -> (Vec<f32>, f32) {
        let net = self.net.valid();
        let x = matrix(obs.to_vec(), 1, self.obs_dim, &self.device);
        let log_probs = to_vec(log_softmax(net.actor.forward(x.clone()), 1)); // [1, n_actions]
        let value = to_vec(net.critic.forward(x))[0]; // [1, 1]
        (log_probs, value)
    }

    /// Epochs of clipped-surrogate minibatch steps over the full rollout.
    fn update(&mut self, last_value: f32) -> Result<()> {
        let cfg = &self.config;
        let (n, dim, k) = (self.rollout.len(), self.obs_dim, self.n_actions);
        let rewards: Vec<f32> = self.rollout.iter().map(|s| s.reward).collect();
        let values: Vec<f32> = self.rollout.iter().map(|s| s.value).collect();
        let ends: Vec<StepEnd> = self.rollout.iter().map(|s| s.end).collect();
        let cut_values: Vec<f32> = self.rollout.iter().map(|s| s.cut_value).collect();
        let (mut adv, returns) = gae(
            &rewards,
            &values,
            &ends,
            &cut_values,
            last_value,
            cfg.gamma as f32,
            cfg.gae_lambda as f32,
        );
        if cfg.normalize_advantage {
            let mean = adv.iter().map(|&a| f64::from(a)).sum::<f64>() / n as f64;
            let var = adv
                .iter()
                .map(|&a| (f64::from(a) - mean).powi(2))
                .sum::<f64>()
                / n as f64;
            let std = var.sqrt() + 1e-8;
            for a in &mut adv {
                *a = ((f64::from(*a) - mean) / std) as f32;
            }
        }
        let (clip, vf, ent) = (
            cfg.clip_range as f32,
            cfg.value_coef as f32,
            cfg.entropy_coef as f32,
        );
        let mut order: Vec<usize> = (0..n).collect();
        let (mut loss_sum, mut entropy_sum, mut batches) = (0.0f64, 0.0f64, 0usize);
        for _ in 0..cfg.epochs {
            order.shuffle(&mut self.rng);
            for chunk in order.chunks(cfg.batch_size) {
                let b = chunk.len();
                let steps: Vec<&Step> = chunk.iter().map(|&i| &self.rollout[i]).collect();
                let obs = matrix(
                    steps.iter().flat_map(|s| s.obs.iter().copied()).collect(),
                    b,
                    dim,
                    &self.ad,
                );
                let actions: Vec<usize> = steps.iter().map(|s| s.action).collect();
                let old_log_prob = vector(steps.iter().map(|s| s.log_prob).collect(), &self.ad);
                let advantage = vector(chunk.iter().map(|&i| adv[i]).collect(), &self.ad);
                let target = vector(chunk.iter().map(|&i| returns[i]).collect(), &self.ad);

                let log_probs = log_softmax(self.net.actor.forward(obs.clone()), 1); // [b, k]
                let log_prob = (log_probs.clone() * one_hot(&actions, k, &self.ad))
                    .sum_dim(1)
                    .reshape([b]); // [b]
                let ratio = (log_prob - old_log_prob).exp(); // [b]
                let unclipped = ratio.clone() * advantage.clone();
                let clipped = ratio.clamp(1.0 - clip, 1.0 + clip) * advantage;
                let policy_loss = unclipped.min_pair(clipped).mean().neg(); // [1]
                let value = self.net.critic.forward(obs).reshape([b]); // [b]
                let value_loss = (value - target).square().mean(); // [1]
                let entropy = (log_probs.clone().exp() * log_probs)
                    .sum_dim(1)
                    .mean()
                    .neg(); // [1]
                let entropy_value = entropy.clone().into_scalar::<f32>();
                let loss = policy_loss + value_loss.mul_scalar(vf) - entropy.mul_scalar(ent);
                let loss_value = loss.clone().into_scalar::<f32>();
                if !loss_value.is_finite() {
                    return Err(ModelError::Agent {
                        step: self.progress.steps,
                        message: format!("PPO diverged: loss is {loss_value}"),
                    });
                }
                let grads = GradientsParams::from_grads(loss.backward(), &self.net);
                self.net = self.optim.step(cfg.lr, self.net.clone(), grads);
                self.progress.updates += 1;
                loss_sum += f64::from(loss_value);
                entropy_sum += f64::from(entropy_value);
                batches += 1;
            }
        }
        self.progress.last_loss = Some((loss_sum / batches as f64) as f32);
        self.progress.entropy = Some((entropy_sum / batches as f64) as f32);
        Ok(())
    }
}

/// The shape, seed, config and counters; not the weights.
impl std::fmt::Debug for PpoAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PpoAgent")
            .field("obs_dim", &self.obs_dim)
            .field("n_actions", &self.n_actions)
            .field("seed", &self.seed)
            .field("config", &self.config)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

impl Agent for PpoAgent {
    fn kind(&self) -> AgentKind {
        AgentKind::Ppo
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
        let (log_probs, value) = self.evaluate(obs);
        // Inverse CDF of one uniform draw; the last action absorbs rounding.
        let u = self.rng.random::<f64>();
        let mut cumulative = 0.0f64;
        let action = log_probs
            .iter()
            .position(|&l| {
                cumulative += f64::from(l.exp());
                u < cumulative
            })
            .unwrap_or(self.n_actions - 1);
        self.pending = Some(Step {
            obs: obs.to_vec(),
            action,
            log_prob: log_probs[action],
            value,
            reward: 0.0,
            end: StepEnd::Continues,
            cut_value: 0.0,
        });
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
        let mut s = self.pending.take().expect("checked above");
        s.reward = reward;
        s.end = end;
        if end == StepEnd::Truncated {
            // The networks change only in `update`, so this is the value the update would see.
            s.cut_value = self.evaluate(next_obs).1;
        }
        self.rollout.push(s);
        self.progress.record(reward, end.ends_episode());
        if self.rollout.len() == self.config.n_steps {
            // The rollout cuts the episode: bootstrap from the critic unless it just ended.
            let last_value = match end {
                StepEnd::Continues => self.evaluate(next_obs).1,
                StepEnd::Terminal | StepEnd::Truncated => 0.0,
            };
            let result = self.update(last_value);
            self.rollout.clear();
            result?;
        }
        Ok(())
    }

    fn greedy(&self, obs: &[f32]) -> Result<usize> {
        check_obs(obs, self.obs_dim, self.progress.steps, "obs")?;
        Ok(argmax(&self.evaluate(obs).0))
    }

    fn stats(&self) -> AgentStats {
        let p = &self.progress;
        AgentStats {
            kind: AgentKind::Ppo,
            steps: p.steps,
            episodes: p.episodes,
            updates: p.updates,
            last_loss: p.last_loss,
            epsilon: None,
            entropy: p.entropy,
            mean_episode_reward: p.mean_episode_reward(),
            last_episode_reward: p.recent_returns.back().copied(),
        }
    }

    fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        save_module(&self.net, &dir.join(PPO_WEIGHTS))?;
        AgentFile {
            dexlab_version: env!("CARGO_PKG_VERSION").into(),
            obs_dim: self.obs_dim,
            n_actions: self.n_actions,
            seed: self.seed,
            config: AgentConfig::Ppo(self.config.clone()),
            progress: self.progress.clone(),
        }
        .write(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// γ = 0.9, λ = 0.8; the episode ends at t = 1, a new one is cut after t = 3.
    ///
    /// t=3: δ = 1 + 0.9·2 − 0.5 = 2.3;              A = 2.3
    /// t=2: δ = 0 + 0.9·0.5 − 0.25 = 0.2;           A = 0.2 + 0.72·2.3 = 1.856
    /// t=1: done: δ = 2 − 1 = 1;                     A = 1
    /// t=0: δ = 1 + 0.9·1 − 0.5 = 1.4;              A = 1.4 + 0.72·1 = 2.12
    #[test]
    fn gae_matches_a_hand_computed_rollout() {
        use StepEnd::*;
        let (adv, ret) = gae(
            &[1.0, 2.0, 0.0, 1.0],
            &[0.5, 1.0, 0.25, 0.5],
            &[Continues, Terminal, Continues, Continues],
            &[9.0; 4],
            2.0,
            0.9,
            0.8,
        );
        let want_adv = [2.12, 1.0, 1.856, 2.3];
        let want_ret = [2.62, 2.0, 2.106, 2.8];
        for t in 0..4 {
            assert!((adv[t] - want_adv[t]).abs() < 1e-6, "A[{t}] = {}", adv[t]);
            assert!((ret[t] - want_ret[t]).abs() < 1e-6, "R[{t}] = {}", ret[t]);
        }
        // λ = 0 is the one-step TD error; a terminal last step ignores `last_value`.
        let (adv, _) = gae(
            &[1.0, 1.0],
            &[0.0, 0.0],
            &[Continues, Terminal],
            &[7.0; 2],
            100.0,
            0.5,
            0.0,
        );
        assert_eq!(adv, vec![1.0, 1.0]);
    }

    /// The same rollout with the episode truncated at t = 1 (critic says 3 after it): t = 1
    /// bootstraps 3, and still nothing flows back from t = 2 into t = 1.
    ///
    /// t=1: δ = 2 + 0.9·3 − 1 = 3.7;                 A = 3.7
    /// t=0: δ = 1 + 0.9·1 − 0.5 = 1.4;              A = 1.4 + 0.72·3.7 = 4.064
    #[test]
    fn gae_bootstraps_a_truncated_step_from_its_own_next_state() {
        use StepEnd::*;
        let (adv, _) = gae(
            &[1.0, 2.0, 0.0, 1.0],
            &[0.5, 1.0, 0.25, 0.5],
            &[Continues, Truncated, Continues, Continues],
            &[0.0, 3.0, 0.0, 0.0],
            2.0,
            0.9,
            0.8,
        );
        let want = [4.064, 3.7, 1.856, 2.3];
        for t in 0..4 {
            assert!(
                (adv[t] - want[t]).abs() < 1e-5,
                "A[{t}] = {}, want {}",
                adv[t],
                want[t]
            );
        }
    }
}
