//! What the two agents share: the MLP, tensor conversions, deterministic module set-up and
//! saving, episode bookkeeping.

use std::collections::VecDeque;
use std::path::Path;

use burn::grad_clipping::GradientClippingConfig;
use burn::module::{ModuleVisitor, Param};
use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::prelude::*;
use burn::store::ModuleRecord;
use serde::{Deserialize, Serialize};

use crate::artifact::CanonicalIds;
use crate::{ModelError, Result};

/// Episodes whose returns feed [`super::AgentStats::mean_episode_reward`].
const RECENT_EPISODES: usize = 100;

/// `d_input → hidden[0] → … → hidden[n-1] → d_output`, ReLU between layers, no activation on
/// the output (Q-values, logits or a state value).
#[derive(Module, Debug)]
pub struct MlpNet {
    layers: Vec<Linear>,
    activation: Relu,
    head: Linear,
}

impl MlpNet {
    pub fn new(d_input: usize, hidden: &[usize], d_output: usize, device: &Device) -> Self {
        let mut d = d_input;
        let mut layers = Vec::with_capacity(hidden.len());
        for &h in hidden {
            layers.push(LinearConfig::new(d, h).init(device));
            d = h;
        }
        Self {
            layers,
            activation: Relu::new(),
            head: LinearConfig::new(d, d_output).init(device),
        }
    }

    /// - x: `[batch, d_input]`
    /// - out: `[batch, d_output]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut h = x;
        for layer in &self.layers {
            h = self.activation.forward(layer.forward(h)); // [batch, hidden_i]
        }
        self.head.forward(h)
    }
}

/// Forces burn's lazily initialised parameters to draw their values now, while the caller holds
/// the training lock, rather than at the first forward pass.
struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// Builds a module from burn's global generator seeded with `seed`, under the crate's training
/// lock, so that two agents built concurrently still get the weights of their own seed.
pub(crate) fn seeded_init<M: Module>(seed: u64, device: &Device, init: impl FnOnce() -> M) -> M {
    let _guard = crate::training::rng_lock();
    device.seed(seed);
    let module = init();
    module.visit(&mut Materialize);
    module
}

/// Adam as the supervised models use it; `grad_clip` is burn's norm clip, applied to each
/// parameter tensor's gradient separately (not one global norm); 0 turns it off.
pub(crate) fn adam(grad_clip: f64) -> ModuleOptimizer {
    let mut adam = AdamConfig::new().with_epsilon(1e-8);
    if grad_clip > 0.0 {
        adam = adam.with_grad_clipping(Some(GradientClippingConfig::Norm(grad_clip as f32)));
    }
    adam.init()
}

/// Writes `module` (validation copy, parameter ids renumbered in module order) so that the same
/// weights always give the same bytes.
pub(crate) fn save_module<M: Module>(module: &M, path: &Path) -> Result<()> {
    module
        .valid()
        .map(&mut CanonicalIds(0))
        .into_record()
        .save(path)
        .map_err(|source| ModelError::Weights {
            path: path.into(),
            source,
        })
}

/// `module` (freshly initialised, of the right shapes) with the weights of `path`.
pub(crate) fn load_module<M: Module>(module: M, path: &Path) -> Result<M> {
    let err = |source| ModelError::Weights {
        path: path.into(),
        source,
    };
    let record = ModuleRecord::load(path).map_err(err)?;
    module.try_load_record(record).map_err(err)
}

/// `rows` observations of `dim` values, flattened row after row, as a `[rows, dim]` tensor.
pub(crate) fn matrix(values: Vec<f32>, rows: usize, dim: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, [rows, dim]), device)
}

/// A `[rows]` tensor.
pub(crate) fn vector(values: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

/// `[rows, n]` rows of zeros with a one at each row's action: selects Q(s, a) or log π(a|s)
/// by a product and a row sum, which every backend differentiates.
pub(crate) fn one_hot(actions: &[usize], n: usize, device: &Device) -> Tensor<2> {
    let mut v = vec![0.0f32; actions.len() * n];
    for (i, &a) in actions.iter().enumerate() {
        v[i * n + a] = 1.0;
    }
    matrix(v, actions.len(), n, device)
}

pub(crate) fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .try_into_vec::<f32>()
        .expect("the agents compute in f32")
}

/// Index of the largest value; the lowest index on ties, so that greedy actions are stable.
pub(crate) fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate().skip(1) {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// Refuses an observation of the wrong length or with a non-finite value: either would poison
/// the network without any later symptom.
pub(crate) fn check_obs(obs: &[f32], dim: usize, step: u64, what: &str) -> Result<()> {
    if obs.len() != dim {
        return Err(ModelError::Agent {
            step,
            message: format!("{what} has {} values, the agent expects {dim}", obs.len()),
        });
    }
    if let Some(i) = obs.iter().position(|v| !v.is_finite()) {
        return Err(ModelError::Agent {
            step,
            message: format!("{what}[{i}] is {}: observations must be finite", obs[i]),
        });
    }
    Ok(())
}

/// Counters and recent episode returns, saved with the agent so that a reloaded agent reports
/// the same statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Progress {
    /// Completed transitions.
    pub steps: u64,
    pub episodes: u64,
    /// Gradient steps.
    pub updates: u64,
    pub last_loss: Option<f32>,
    /// PPO: mean policy entropy over the last update.
    pub entropy: Option<f32>,
    /// The last [`RECENT_EPISODES`] episode returns, oldest first.
    pub recent_returns: VecDeque<f64>,
    /// Return of the episode under way (not saved: a reloaded agent starts a new episode).
    #[serde(skip)]
    pub current_return: f64,
}

impl Progress {
    /// Counts one transition and closes the episode on `done`.
    pub fn record(&mut self, reward: f32, done: bool) {
        self.steps += 1;
        self.current_return += f64::from(reward);
        if done {
            self.episodes += 1;
            if self.recent_returns.len() == RECENT_EPISODES {
                self.recent_returns.pop_front();
            }
            self.recent_returns.push_back(self.current_return);
            self.current_return = 0.0;
        }
    }

    pub fn mean_episode_reward(&self) -> Option<f64> {
        let n = self.recent_returns.len();
        (n > 0).then(|| self.recent_returns.iter().sum::<f64>() / n as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[0.5]), 0);
    }

    #[test]
    fn progress_keeps_the_last_hundred_episodes() {
        let mut p = Progress::default();
        for i in 0..150 {
            p.record(0.5, false);
            p.record(i as f32, true);
        }
        assert_eq!((p.steps, p.episodes), (300, 150));
        assert_eq!(p.recent_returns.len(), RECENT_EPISODES);
        // Returns of episodes 50..150: 50.5 … 149.5.
        assert_eq!(p.mean_episode_reward(), Some(100.0));
    }

    #[test]
    fn check_obs_names_the_problem() {
        let e = check_obs(&[1.0, f32::NAN], 2, 7, "obs")
            .unwrap_err()
            .to_string();
        assert!(e.contains("step 7") && e.contains("obs[1] is NaN"), "{e}");
        let e = check_obs(&[1.0], 2, 0, "next_obs").unwrap_err().to_string();
        assert!(e.contains("next_obs has 1 values"), "{e}");
    }
}
