//! Hyperparameters, the training loop and the [`crate::train`] pipeline.
//!
//! The loop is written by hand rather than with burn's `Learner`: it is short, and owning it
//! keeps every source of randomness in view. Weights come from the backend's generator, seeded
//! with [`Device::seed`]; dropout masks too (one seed per mask drawn from it,
//! [`crate::dropout`]); the per-epoch shuffle of the train split comes from
//! a ChaCha8 generator seeded with the same seed. Nothing else is random, batches are processed
//! in order, and what runs on several threads (the fused GRU's chunks) is summed in a fixed
//! order, so on CPU the same seed and data give bit-identical weights.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::grad_clipping::GradientClippingConfig;
use burn::nn::loss::{BinaryCrossEntropyLossConfig, MseLoss, Reduction};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::artifact::{self, Artifact, DatasetInfo, MetricsFile, Predictions, Schema, Staging};
use crate::data::{
    FeatureTable, Normalizer, PrepareOptions, Prepared, Split, SplitFractions, WindowBatcher,
    WindowItem, label_features, label_horizon, label_lookahead, prepare,
};
use crate::eval::{self, Baseline, Metrics, TestReport};
use crate::model::{
    GruModelConfig, LinearModelConfig, MlpConfig, Model, ModelConfig, TransformerModelConfig,
};
use crate::{ModelError, ModelKind, Result, Task, TrainOptions, TrainReport};

/// burn's CPU backends draw from one process-wide generator: trainings must not interleave.
static TRAIN_LOCK: Mutex<()> = Mutex::new(());

/// Held while seeding and drawing from the backend's generator (training, module init).
pub(crate) fn rng_lock() -> MutexGuard<'static, ()> {
    TRAIN_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Learning rate over the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    /// From `lr` down to `min_lr` along half a cosine, per step, over all epochs.
    Cosine,
    /// `lr * gamma^(epoch / every)`, not below `min_lr`.
    Step {
        every: usize,
        gamma: f64,
    },
}

impl Schedule {
    fn lr(&self, cfg: &TrainingConfig, step: usize, total: usize, per_epoch: usize) -> f64 {
        match *self {
            Schedule::Constant => cfg.lr,
            Schedule::Cosine => {
                let frac = step as f64 / total.max(1) as f64;
                cfg.min_lr
                    + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + (std::f64::consts::PI * frac).cos())
            }
            Schedule::Step { every, gamma } => {
                let k = (step / per_epoch.max(1)) / every.max(1);
                (cfg.lr * gamma.powi(k as i32)).max(cfg.min_lr)
            }
        }
    }
}

/// What the loop needs; saved in `config.json`.
#[derive(Config, Debug)]
pub struct TrainingConfig {
    pub seed: u64,
    pub max_epochs: usize,
    #[config(default = 64)]
    pub batch_size: usize,
    #[config(default = 1e-3)]
    pub lr: f64,
    #[config(default = 1e-5)]
    pub min_lr: f64,
    #[config(default = "Schedule::Cosine")]
    pub schedule: Schedule,
    /// Epochs without a better validation loss before stopping.
    #[config(default = 5)]
    pub patience: usize,
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// Gradient norm clip; 0 disables.
    #[config(default = 1.0)]
    pub grad_clip: f64,
}

/// Hyperparameters from the `--config` TOML file. Every key is optional:
///
/// ```toml
/// features = ["a", "b"]    # default: every Float64 column but labels, block_number, timestamp;
///                          # never a `label_…` column
/// window = 16              # rows per sample; default 1 (linear, mlp), 16 (gru, transformer)
/// split = [0.7, 0.15, 0.15]
/// embargo = 5              # samples skipped before valid and test; default (and minimum): the
///                          # label's look-ahead in blocks (horizon, or latency for arbitrage)
/// batch_size = 64
/// lr = 0.001
/// min_lr = 0.00001
/// schedule = "cosine"      # cosine | step | constant
/// step_every = 10          # schedule = "step": epochs between decays
/// step_gamma = 0.5         # schedule = "step": factor per decay
/// patience = 5
/// weight_decay = 0.0
/// grad_clip = 1.0          # gradient norm; 0 = off
/// dropout = 0.1            # mlp, gru, transformer
/// hidden = [64, 32]        # mlp
/// d_hidden = 32            # gru
/// d_model = 32             # transformer
/// n_heads = 4
/// n_layers = 2
/// d_ff = 64
/// ```
///
/// Keys of another model kind are accepted, so one file can serve all four.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hyper {
    pub features: Option<Vec<String>>,
    pub window: usize,
    pub split: SplitFractions,
    pub embargo: Option<usize>,
    pub batch_size: usize,
    pub lr: f64,
    pub min_lr: f64,
    pub schedule: Schedule,
    pub patience: usize,
    pub weight_decay: f64,
    pub grad_clip: f64,
    pub dropout: f64,
    pub hidden: Vec<usize>,
    pub d_hidden: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_layers: usize,
    pub d_ff: usize,
}

const KEYS: [&str; 20] = [
    "features",
    "window",
    "split",
    "embargo",
    "batch_size",
    "lr",
    "min_lr",
    "schedule",
    "step_every",
    "step_gamma",
    "patience",
    "weight_decay",
    "grad_clip",
    "dropout",
    "hidden",
    "d_hidden",
    "d_model",
    "n_heads",
    "n_layers",
    "d_ff",
];

impl Hyper {
    pub fn defaults(kind: ModelKind) -> Self {
        Self {
            features: None,
            window: if kind.is_sequence() { 16 } else { 1 },
            split: SplitFractions::default(),
            embargo: None,
            batch_size: 64,
            lr: 1e-3,
            min_lr: 1e-5,
            schedule: Schedule::Cosine,
            patience: 5,
            weight_decay: 0.0,
            grad_clip: 1.0,
            dropout: 0.1,
            hidden: vec![64, 32],
            d_hidden: 32,
            d_model: 32,
            n_heads: 4,
            n_layers: 2,
            d_ff: 64,
        }
    }

    /// These hyperparameters as a `--config` file says them: every key [`Self::from_toml`]
    /// reads (`features` and `embargo` as comments when unset: their defaults depend on the
    /// data), so that the configuration reference is made from the real defaults.
    pub fn to_toml(&self) -> String {
        let floats = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = String::new();
        match &self.features {
            Some(f) => out.push_str(&format!(
                "features = [{}]\n",
                f.iter()
                    .map(|c| format!("{c:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            None => out.push_str(
                "# features = [...]   # default: every Float64 column but labels, block_number, timestamp\n",
            ),
        }
        out.push_str(&format!("window = {}\n", self.window));
        out.push_str(&format!(
            "split = [{}]\n",
            floats(&[self.split.train, self.split.valid, self.split.test])
        ));
        match self.embargo {
            Some(e) => out.push_str(&format!("embargo = {e}\n")),
            None => {
                out.push_str("# embargo = N         # default: the label's look-ahead in blocks\n")
            }
        }
        out.push_str(&format!("batch_size = {}\n", self.batch_size));
        out.push_str(&format!("lr = {:?}\n", self.lr));
        out.push_str(&format!("min_lr = {:?}\n", self.min_lr));
        match self.schedule {
            Schedule::Constant => out.push_str("schedule = \"constant\"\n"),
            Schedule::Cosine => out.push_str("schedule = \"cosine\"\n"),
            Schedule::Step { every, gamma } => out.push_str(&format!(
                "schedule = \"step\"\nstep_every = {every}\nstep_gamma = {gamma:?}\n"
            )),
        }
        out.push_str(&format!("patience = {}\n", self.patience));
        out.push_str(&format!("weight_decay = {:?}\n", self.weight_decay));
        out.push_str(&format!("grad_clip = {:?}\n", self.grad_clip));
        out.push_str(&format!("dropout = {:?}\n", self.dropout));
        out.push_str(&format!(
            "hidden = [{}]\n",
            self.hidden
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for (k, v) in [
            ("d_hidden", self.d_hidden),
            ("d_model", self.d_model),
            ("n_heads", self.n_heads),
            ("n_layers", self.n_layers),
            ("d_ff", self.d_ff),
        ] {
            out.push_str(&format!("{k} = {v}\n"));
        }
        out
    }

    pub fn load(path: &Path, kind: ModelKind) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_toml(&text, &path.display().to_string(), kind)
    }

    /// Parse and validate; `file` names the source in errors.
    pub fn from_toml(text: &str, file: &str, kind: ModelKind) -> Result<Self> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ModelError::Toml {
                path: file.into(),
                source: e,
            })?;
        let mut h = Self::defaults(kind);
        let get = Getter {
            table: &table,
            file,
        };
        if let Some(key) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(ModelError::config(
                file,
                key,
                format!("unknown key; known keys: {}", KEYS.join(", ")),
            ));
        }
        if let Some(v) = get.strings("features")? {
            h.features = Some(v);
        }
        if let Some(v) = get.usize("window")? {
            h.window = v;
        }
        if let Some(v) = get.floats("split")? {
            if v.len() != 3 {
                return Err(ModelError::config(
                    file,
                    "split",
                    "expected [train, valid, test]",
                ));
            }
            h.split = SplitFractions {
                train: v[0],
                valid: v[1],
                test: v[2],
            };
        }
        if let Some(v) = get.usize("embargo")? {
            h.embargo = Some(v);
        }
        if let Some(v) = get.usize("batch_size")? {
            h.batch_size = v;
        }
        if let Some(v) = get.float("lr")? {
            h.lr = v;
        }
        h.min_lr = get.float("min_lr")?.unwrap_or(h.lr / 100.0);
        if let Some(v) = get.str("schedule")? {
            h.schedule = match v.as_str() {
                "constant" => Schedule::Constant,
                "cosine" => Schedule::Cosine,
                "step" => Schedule::Step {
                    every: get.usize("step_every")?.unwrap_or(10),
                    gamma: get.float("step_gamma")?.unwrap_or(0.5),
                },
                other => {
                    return Err(ModelError::config(
                        file,
                        "schedule",
                        format!("`{other}`: expected cosine, step or constant"),
                    ));
                }
            };
        }
        for key in ["step_every", "step_gamma"] {
            if table.contains_key(key) && !matches!(h.schedule, Schedule::Step { .. }) {
                return Err(ModelError::config(
                    file,
                    key,
                    "only applies to schedule = \"step\"",
                ));
            }
        }
        if let Some(v) = get.usize("patience")? {
            h.patience = v;
        }
        if let Some(v) = get.float("weight_decay")? {
            h.weight_decay = v;
        }
        if let Some(v) = get.float("grad_clip")? {
            h.grad_clip = v;
        }
        if let Some(v) = get.float("dropout")? {
            h.dropout = v;
        }
        if let Some(v) = get.usizes("hidden")? {
            h.hidden = v;
        }
        for (key, slot) in [
            ("d_hidden", &mut h.d_hidden),
            ("d_model", &mut h.d_model),
            ("n_heads", &mut h.n_heads),
            ("n_layers", &mut h.n_layers),
            ("d_ff", &mut h.d_ff),
        ] {
            if let Some(v) = get.usize(key)? {
                *slot = v;
            }
        }
        h.validate(file)?;
        Ok(h)
    }

    /// Range checks; every error names the key.
    pub fn validate(&self, file: &str) -> Result<()> {
        let err = |key: &str, msg: &str| Err(ModelError::config(file, key, msg));
        if self.features.as_ref().is_some_and(Vec::is_empty) {
            return err("features", "must list at least one column");
        }
        if let Some(f) = &self.features {
            let labels = label_features(f);
            if !labels.is_empty() {
                let list = labels
                    .iter()
                    .map(|l| format!("`{l}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                return err(
                    "features",
                    &format!(
                        "label columns cannot be features (a label at block t reads blocks \
                         after t): {list}"
                    ),
                );
            }
        }
        if !(1..=4096).contains(&self.window) {
            return err("window", "must be between 1 and 4096");
        }
        let s = self.split;
        if [s.train, s.valid, s.test]
            .iter()
            .any(|f| !f.is_finite() || *f <= 0.0)
        {
            return err("split", "every fraction must be > 0");
        }
        if (s.train + s.valid + s.test - 1.0).abs() > 1e-6 {
            return err("split", "fractions must add up to 1");
        }
        if self.batch_size == 0 {
            return err("batch_size", "must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr <= 1.0) {
            return err("lr", "must be in (0, 1]");
        }
        if !(self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return err("min_lr", "must be in [0, lr]");
        }
        if let Schedule::Step { every, gamma } = self.schedule {
            if every == 0 {
                return err("step_every", "must be at least 1");
            }
            if !(gamma > 0.0 && gamma <= 1.0) {
                return err("step_gamma", "must be in (0, 1]");
            }
        }
        if self.patience == 0 {
            return err("patience", "must be at least 1");
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return err("weight_decay", "must be >= 0");
        }
        if !(self.grad_clip >= 0.0 && self.grad_clip.is_finite()) {
            return err("grad_clip", "must be >= 0");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return err("dropout", "must be in [0, 1)");
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return err("hidden", "must list at least one layer, each of size >= 1");
        }
        if let Some(w) = self.hidden.iter().find(|&&w| w > MAX_WIDTH) {
            return err(
                "hidden",
                &format!("a layer of {w} units: each must be at most {MAX_WIDTH}"),
            );
        }
        if self.hidden.len() > MAX_LAYERS {
            return err(
                "hidden",
                &format!("{} layers: at most {MAX_LAYERS}", self.hidden.len()),
            );
        }
        for (key, v, max) in [
            ("d_hidden", self.d_hidden, MAX_WIDTH),
            ("d_model", self.d_model, MAX_WIDTH),
            ("n_heads", self.n_heads, MAX_WIDTH),
            ("n_layers", self.n_layers, MAX_LAYERS),
            ("d_ff", self.d_ff, MAX_WIDTH),
        ] {
            if !(1..=max).contains(&v) {
                return err(key, &format!("{v} must be between 1 and {max}"));
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return err("n_heads", "must divide d_model");
        }
        Ok(())
    }

    /// The model configuration for `features` input columns.
    pub fn model_config(&self, kind: ModelKind, features: usize) -> ModelConfig {
        let flat = features * self.window;
        match kind {
            ModelKind::Linear => ModelConfig::Linear(LinearModelConfig::new(flat)),
            ModelKind::Mlp => ModelConfig::Mlp(
                MlpConfig::new(flat, self.hidden.clone()).with_dropout(self.dropout),
            ),
            ModelKind::Gru => ModelConfig::Gru(
                GruModelConfig::new(features, self.d_hidden).with_dropout(self.dropout),
            ),
            ModelKind::Transformer => ModelConfig::Transformer(
                TransformerModelConfig::new(
                    features,
                    self.window,
                    self.d_model,
                    self.n_heads,
                    self.n_layers,
                    self.d_ff,
                )
                .with_dropout(self.dropout),
            ),
        }
    }

    pub fn training_config(&self, seed: u64, max_epochs: usize) -> TrainingConfig {
        TrainingConfig::new(seed, max_epochs)
            .with_batch_size(self.batch_size)
            .with_lr(self.lr)
            .with_min_lr(self.min_lr)
            .with_schedule(self.schedule)
            .with_patience(self.patience)
            .with_weight_decay(self.weight_decay)
            .with_grad_clip(self.grad_clip)
    }
}

struct Getter<'a> {
    table: &'a toml::Table,
    file: &'a str,
}

impl Getter<'_> {
    fn bad(&self, key: &str, want: &str, v: &toml::Value) -> ModelError {
        ModelError::config(self.file, key, format!("expected {want}, found `{v}`"))
    }

    fn usize(&self, key: &str) -> Result<Option<usize>> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) if *i >= 0 => Ok(Some(*i as usize)),
            Some(v) => Err(self.bad(key, "a non-negative integer", v)),
        }
    }

    fn float(&self, key: &str) -> Result<Option<f64>> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::Float(f)) => Ok(Some(*f)),
            Some(toml::Value::Integer(i)) => Ok(Some(*i as f64)),
            Some(v) => Err(self.bad(key, "a number", v)),
        }
    }

    fn str(&self, key: &str) -> Result<Option<String>> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.bad(key, "a string", v)),
        }
    }

    fn array(&self, key: &str, want: &str) -> Result<Option<&Vec<toml::Value>>> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(self.bad(key, want, v)),
        }
    }

    fn usizes(&self, key: &str) -> Result<Option<Vec<usize>>> {
        let want = "an array of non-negative integers";
        let Some(a) = self.array(key, want)? else {
            return Ok(None);
        };
        a.iter()
            .map(|v| match v {
                toml::Value::Integer(i) if *i >= 0 => Ok(*i as usize),
                v => Err(self.bad(key, want, v)),
            })
            .collect::<Result<_>>()
            .map(Some)
    }

    fn floats(&self, key: &str) -> Result<Option<Vec<f64>>> {
        let want = "an array of numbers";
        let Some(a) = self.array(key, want)? else {
            return Ok(None);
        };
        a.iter()
            .map(|v| match v {
                toml::Value::Float(f) => Ok(*f),
                toml::Value::Integer(i) => Ok(*i as f64),
                v => Err(self.bad(key, want, v)),
            })
            .collect::<Result<_>>()
            .map(Some)
    }

    fn strings(&self, key: &str) -> Result<Option<Vec<String>>> {
        let want = "an array of strings";
        let Some(a) = self.array(key, want)? else {
            return Ok(None);
        };
        a.iter()
            .map(|v| match v {
                toml::Value::String(s) => Ok(s.clone()),
                v => Err(self.bad(key, want, v)),
            })
            .collect::<Result<_>>()
            .map(Some)
    }
}

/// One epoch of the learning curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Mean training loss over the epoch's batches (dropout active), model scale.
    pub train_loss: f64,
    /// Validation loss, model scale (MSE of the standardised target, or BCE).
    pub valid_loss: f64,
}

/// The outcome of [`fit`].
#[derive(Debug, Clone)]
pub struct Fit {
    /// The weights of the best validation epoch, in validation mode on the plain device.
    pub model: Model,
    pub curve: Vec<EpochRecord>,
    pub best_epoch: usize,
    pub best_valid_loss: f64,
    pub stopped_early: bool,
    /// Samples trained on, over all epochs.
    pub samples: usize,
}

impl Fit {
    pub fn epochs_run(&self) -> usize {
        self.curve.len()
    }
}

/// Train `config`'s model on the train split of `data`, validate each epoch, keep the best
/// weights (written to `checkpoint` whenever they improve) and stop after `patience` epochs
/// without improvement.
pub fn fit(
    config: &ModelConfig,
    data: &Prepared,
    cfg: &TrainingConfig,
    device: &Device,
    checkpoint: Option<&Path>,
) -> Result<Fit> {
    let _guard = rng_lock();
    device.seed(cfg.seed);
    let ad = device.clone().autodiff();
    let mut model = config.init(&ad);
    let mut adam = AdamConfig::new().with_epsilon(1e-8);
    if cfg.weight_decay > 0.0 {
        adam = adam.with_weight_decay(Some(WeightDecayConfig::new(cfg.weight_decay as f32)));
    }
    if cfg.grad_clip > 0.0 {
        adam = adam.with_grad_clipping(Some(GradientClippingConfig::Norm(cfg.grad_clip as f32)));
    }
    let mut optim = adam.init();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let train = data.dataset(Split::Train);
    let batcher = WindowBatcher {
        window: data.window,
        features: data.features.len(),
    };
    let n = train.len();
    let per_epoch = n.div_ceil(cfg.batch_size);
    let total = per_epoch * cfg.max_epochs;
    let mut step = 0;
    let mut curve = Vec::new();
    let mut best: Option<(f64, usize, Model)> = None;
    let mut since_best = 0;
    let mut stopped_early = false;
    let mut samples = 0;
    let mut order: Vec<usize> = (0..n).collect();
    for epoch in 1..=cfg.max_epochs {
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        let mut lr = cfg.lr;
        for chunk in order.chunks(cfg.batch_size) {
            lr = cfg.schedule.lr(cfg, step, total, per_epoch);
            step += 1;
            let items: Vec<WindowItem> = chunk
                .iter()
                .map(|&i| train.get(i).expect("index within the split"))
                .collect();
            let batch = batcher.batch(items, &ad);
            let out = model.forward(batch.inputs);
            let loss = task_loss(data.task, out, batch.targets);
            loss_sum += loss.clone().into_scalar::<f32>() as f64 * chunk.len() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
        }
        samples += n;
        let train_loss = loss_sum / n as f64;
        if !train_loss.is_finite() {
            return Err(ModelError::Diverged {
                epoch,
                what: "train",
            });
        }
        let snapshot = model.valid();
        let valid_loss = split_loss(&snapshot, data, Split::Valid, device, cfg.batch_size);
        if !valid_loss.is_finite() {
            return Err(ModelError::Diverged {
                epoch,
                what: "valid",
            });
        }
        tracing::debug!(epoch, lr, train_loss, valid_loss, "epoch");
        curve.push(EpochRecord {
            epoch,
            lr,
            train_loss,
            valid_loss,
        });
        if best.as_ref().is_none_or(|b| valid_loss < b.0) {
            if let Some(path) = checkpoint {
                artifact::save_weights(snapshot.clone(), path)?;
            }
            best = Some((valid_loss, epoch, snapshot));
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= cfg.patience {
                stopped_early = true;
                break;
            }
        }
    }
    let (best_valid_loss, best_epoch, model) = best.expect("at least one epoch");
    Ok(Fit {
        model,
        curve,
        best_epoch,
        best_valid_loss,
        stopped_early,
        samples,
    })
}

/// - out: `[batch, 1]`, targets: `[batch]`
fn task_loss(task: Task, out: Tensor<2>, targets: Tensor<1>) -> Tensor<1> {
    let [b, _] = out.dims();
    let out = out.reshape([b]);
    match task {
        Task::Regression => MseLoss::new().forward(out, targets, Reduction::Mean),
        Task::Classification => BinaryCrossEntropyLossConfig::new()
            .with_logits(true)
            .init(&out.device())
            .forward(out, targets.int()),
    }
}

/// Raw model outputs (standardised prediction or logit) for the samples of a split.
pub fn predict_split(
    model: &Model,
    data: &Prepared,
    split: Split,
    device: &Device,
    batch_size: usize,
) -> Vec<f32> {
    let ds = data.dataset(split);
    let batcher = WindowBatcher {
        window: data.window,
        features: data.features.len(),
    };
    let mut out = Vec::with_capacity(ds.len());
    let idx: Vec<usize> = (0..ds.len()).collect();
    for chunk in idx.chunks(batch_size.max(1)) {
        let items: Vec<WindowItem> = chunk
            .iter()
            .map(|&i| ds.get(i).expect("index within the split"))
            .collect();
        let batch = batcher.batch(items, device);
        let y = model.forward(batch.inputs);
        out.extend(
            y.into_data()
                .try_into_vec::<f32>()
                .expect("the models compute in f32"),
        );
    }
    out
}

/// The task loss of a split, computed in f64 from the outputs (independent of batching).
fn split_loss(model: &Model, data: &Prepared, split: Split, device: &Device, bs: usize) -> f64 {
    let out = predict_split(model, data, split, device, bs);
    let rows = data.rows(split);
    let ds = data.dataset(split);
    let n = rows.len().max(1) as f64;
    let targets = (0..ds.len()).map(|i| ds.get(i).expect("in range").y as f64);
    match data.task {
        Task::Regression => {
            out.iter()
                .zip(targets)
                .map(|(&o, t)| (o as f64 - t).powi(2))
                .sum::<f64>()
                / n
        }
        Task::Classification => {
            out.iter()
                .zip(targets)
                .map(|(&z, t)| {
                    let z = z as f64;
                    z.max(0.0) - z * t + (-z.abs()).exp().ln_1p()
                })
                .sum::<f64>()
                / n
        }
    }
}

/// Probabilities (classification) or raw-unit predictions (regression) from model outputs.
pub(crate) fn to_task_scale(data: &Prepared, out: &[f32]) -> Vec<f64> {
    out.iter()
        .map(|&o| output_to_task(data.task, &data.normalizer, o))
        .collect()
}

/// One model output to the task's scale: the target in its units, or a probability. The
/// predictor uses the same function, so that reloaded predictions match the recorded metrics.
pub(crate) fn output_to_task(task: Task, norm: &Normalizer, out: f32) -> f64 {
    match task {
        Task::Regression => norm.target_from_model(out),
        Task::Classification => 1.0 / (1.0 + (-(out as f64)).exp()),
    }
}

/// Score the test split: the model, then the baselines. Also returns the model's test
/// predictions, on the task's scale, for `predictions.csv`.
fn evaluate(
    trained: &Fit,
    kind: ModelKind,
    data: &Prepared,
    hyper: &Hyper,
    cfg: &TrainingConfig,
    device: &Device,
) -> Result<(TestReport, Predictions)> {
    let rows = &data.test;
    let y: Vec<f64> = rows.iter().map(|&r| data.raw_target[r]).collect();
    let out = predict_split(&trained.model, data, Split::Test, device, cfg.batch_size);
    let pred = to_task_scale(data, &out);
    let n = y.len();
    let mut baselines = Vec::new();
    let model = match data.task {
        Task::Regression => {
            baselines.push(Baseline {
                name: "zero".into(),
                description: "predicts 0".into(),
                metrics: Metrics::Regression(eval::regression(&vec![0.0; n], &y)),
            });
            let mean = data.train_target_mean();
            baselines.push(Baseline {
                name: "train_mean".into(),
                description: format!("predicts the train-split mean target {mean:e}"),
                metrics: Metrics::Regression(eval::regression(&vec![mean; n], &y)),
            });
            if let Some(h) = label_horizon(&data.target) {
                let (p, fallback) = data.persistence(rows, h);
                baselines.push(Baseline {
                    name: "persistence".into(),
                    description: format!(
                        "predicts the target of the row {h} block(s) earlier, the last one \
                         whose horizon has elapsed (for a forward return: the past {h}-block \
                         return); 0 at {fallback} rows where that is undefined"
                    ),
                    metrics: Metrics::Regression(eval::regression(&p, &y)),
                });
            }
            Metrics::Regression(eval::regression(&pred, &y))
        }
        Task::Classification => {
            let rate = data.train_target_mean();
            baselines.push(Baseline {
                name: "majority".into(),
                description: format!(
                    "predicts the train-split positive rate {rate:.4} (so the majority class at 0.5)"
                ),
                metrics: Metrics::Classification(eval::classification(&vec![rate; n], &y)),
            });
            let model = Metrics::Classification(eval::classification(&pred, &y));
            let logistic = if kind == ModelKind::Linear {
                Baseline {
                    name: "logistic".into(),
                    description: "the model itself (linear on the same inputs)".into(),
                    metrics: model.clone(),
                }
            } else {
                let lin = hyper.model_config(ModelKind::Linear, data.features.len());
                let lfit = fit(&lin, data, cfg, device, None)?;
                let out = predict_split(&lfit.model, data, Split::Test, device, cfg.batch_size);
                let p = to_task_scale(data, &out);
                Baseline {
                    name: "logistic".into(),
                    description: format!(
                        "linear model with BCE on the same inputs, trained the same way \
                         ({} epochs, best {})",
                        lfit.epochs_run(),
                        lfit.best_epoch
                    ),
                    metrics: Metrics::Classification(eval::classification(&p, &y)),
                }
            };
            baselines.push(logistic);
            model
        }
    };
    let report = TestReport {
        rows: n,
        first_block: data.block(rows[0]),
        last_block: data.block(rows[n - 1]),
        model,
        baselines,
    };
    let predictions = Predictions {
        blocks: rows.iter().map(|&r| data.block(r)).collect(),
        realised: y,
        predicted: pred,
    };
    Ok((report, predictions))
}

/// The most epochs a training may ask for: far beyond any useful run (early stopping ends most
/// within a few dozen), low enough that steps per epoch times epochs cannot overflow.
pub const MAX_EPOCHS: usize = 1_000_000;

/// The epoch count of `--epochs` (or [`crate::TrainOptions::epochs`]), checked where it is read.
pub fn check_epochs(epochs: usize) -> Result<()> {
    if !(1..=MAX_EPOCHS).contains(&epochs) {
        return Err(ModelError::config(
            "options",
            "epochs",
            format!("{epochs} must be at least 1 and at most {MAX_EPOCHS}"),
        ));
    }
    Ok(())
}

/// The widest layer (hidden units, model or feed-forward width) a config may ask for, and the
/// most stacked layers: beyond these the weights alone would not fit in memory.
pub const MAX_WIDTH: usize = 65_536;
pub const MAX_LAYERS: usize = 256;

/// The whole pipeline behind [`crate::train`].
pub(crate) fn run(opts: &TrainOptions) -> Result<TrainReport> {
    check_epochs(opts.epochs)?;
    let hyper = match &opts.config {
        Some(path) => Hyper::load(path, opts.model)?,
        None => Hyper::defaults(opts.model),
    };
    let parquet = opts.features_dir.join("features.parquet");
    let dataset_hash = artifact::read_dataset_hash(&opts.features_dir)?;
    let table = FeatureTable::read(&parquet)?;
    let target = match &opts.target {
        Some(t) => t.clone(),
        None => table
            .default_target(opts.task)
            .ok_or_else(|| ModelError::Data {
                path: parquet.clone(),
                message: format!(
                    "no label column for {} with any finite value; labels: [{}]; of which \
                 entirely null/NaN: [{}]",
                    opts.task,
                    table.label_columns().collect::<Vec<_>>().join(", "),
                    table
                        .label_columns()
                        .filter(|l| table.is_empty_column(l))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?,
    };
    if table.index(&target).is_some()
        && opts.task == Task::Classification
        && !table.is_binary(&target)
    {
        return Err(ModelError::Column {
            path: parquet,
            column: target,
            message: "classification needs a 0/1 or bool target".into(),
        });
    }
    // The default selection leaves out columns with no finite value; an explicit list is
    // taken as given (and fails with the worst columns named if it leaves too few rows).
    let (features, excluded_features): (Vec<String>, Vec<String>) = match &hyper.features {
        Some(f) => (f.clone(), Vec::new()),
        None => table
            .default_features()
            .into_iter()
            .partition(|f| !table.is_empty_column(f)),
    };
    if !excluded_features.is_empty() {
        tracing::warn!(
            ?excluded_features,
            "feature columns without any finite value left out"
        );
    }
    let config_file = opts
        .config
        .as_ref()
        .map_or_else(|| "options".to_string(), |p| p.display().to_string());
    let manifest = artifact::read_manifest(&opts.features_dir)?;
    // No label of a training split may read into the next split: the embargo is at least the
    // label's look-ahead, which must be known.
    let lookahead = label_lookahead(&target, manifest.as_ref());
    let embargo = match (hyper.embargo, lookahead) {
        (Some(e), Some(l)) if e < l => {
            return Err(ModelError::config(
                &config_file,
                "embargo",
                format!(
                    "{e} is shorter than the look-ahead of `{target}` ({l} blocks): its train \
                     labels would read the valid split"
                ),
            ));
        }
        (Some(e), _) => e,
        (None, Some(l)) => l,
        (None, None) => {
            return Err(ModelError::Column {
                path: parquet,
                column: target,
                message: "how many blocks this label looks ahead is unknown (the features \
                          manifest does not record it, and it is not one of dexlab's \
                          `label_fwd_ret_<h>__…`, `label_fwd_spread_chg_<h>__…`, \
                          `label_arb_profitable__…`): set `embargo` in the training config to \
                          at least its look-ahead in blocks"
                    .into(),
            });
        }
    };
    let data = prepare(
        &table,
        &PrepareOptions {
            features: features.clone(),
            target: target.clone(),
            task: opts.task,
            window: hyper.window,
            split: hyper.split,
            embargo,
        },
    )?;
    let device = opts.backend.device()?;
    let model_config = hyper.model_config(opts.model, features.len());
    let cfg = hyper.training_config(opts.seed, opts.epochs);
    let staging = Staging::new(&opts.out_dir)?;
    let started = Instant::now();
    let fit = fit(
        &model_config,
        &data,
        &cfg,
        &device,
        Some(&staging.path().join(artifact::WEIGHTS)),
    )?;
    let train_seconds = started.elapsed().as_secs_f64();
    let (test, predictions) = evaluate(&fit, opts.model, &data, &hyper, &cfg, &device)?;
    let split_blocks = |rows: &[usize]| (data.block(rows[0]), data.block(rows[rows.len() - 1]));
    let artifact = Artifact {
        config: artifact::ConfigFile {
            dexlab_version: env!("CARGO_PKG_VERSION").into(),
            model_kind: opts.model,
            task: opts.task,
            seed: opts.seed,
            backend: opts.backend,
            model: model_config,
            training: cfg,
            hyper: hyper.clone(),
            git_commit: artifact::git_commit(),
        },
        schema: Schema {
            features: features.clone(),
            target: target.clone(),
            window: data.window,
            task: opts.task,
        },
        normalizer: data.normalizer.clone(),
        metrics: MetricsFile {
            curve: fit.curve.clone(),
            best_epoch: fit.best_epoch,
            best_valid_loss: fit.best_valid_loss,
            epochs_run: fit.epochs_run(),
            stopped_early: fit.stopped_early,
            test: test.clone(),
        },
        dataset: DatasetInfo {
            features_dir: opts.features_dir.clone(),
            dataset_hash,
            excluded_features: excluded_features.clone(),
            rows: data.counts,
            embargo,
            train_blocks: split_blocks(&data.train),
            valid_blocks: split_blocks(&data.valid),
            test_blocks: split_blocks(&data.test),
            lookahead_blocks: Some(lookahead.unwrap_or(embargo)),
        },
    };
    artifact.write_json(staging.path())?;
    predictions.write_csv(&staging.path().join(artifact::PREDICTIONS))?;
    let model_dir = staging.commit()?;
    Ok(TrainReport {
        model_dir,
        model: opts.model,
        task: opts.task,
        target,
        features: features.len(),
        excluded_features,
        window: data.window,
        rows: data.counts,
        epochs_run: fit.epochs_run(),
        best_epoch: fit.best_epoch,
        stopped_early: fit.stopped_early,
        best_valid_loss: fit.best_valid_loss,
        test,
        train_seconds,
        train_samples_per_sec: fit.samples as f64 / train_seconds.max(1e-9),
    })
}

#[cfg(test)]
mod to_toml_tests {
    use super::*;

    /// Every kind's defaults, written out and read back, are the defaults; and every key the
    /// reader knows is in what is written (as a key or, when it has no fixed default, a comment).
    #[test]
    fn defaults_round_trip_through_their_toml() {
        for kind in ModelKind::ALL {
            let h = Hyper::defaults(kind);
            let text = h.to_toml();
            let back = Hyper::from_toml(&text, "defaults.toml", kind).unwrap();
            assert_eq!(back, h, "{kind:?}:\n{text}");
            let mut stepped = h.clone();
            stepped.schedule = Schedule::Step {
                every: 7,
                gamma: 0.25,
            };
            let back = Hyper::from_toml(&stepped.to_toml(), "step.toml", kind).unwrap();
            assert_eq!(back, stepped);
            for key in KEYS {
                let said = text.contains(&format!("\n{key} = "))
                    || text.starts_with(&format!("{key} = "))
                    || text.contains(&format!("# {key} = "))
                    || stepped.to_toml().contains(&format!("{key} = "));
                assert!(said, "{key} missing from:\n{text}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_key() {
        let e = |s: &str| {
            Hyper::from_toml(s, "h.toml", ModelKind::Mlp)
                .unwrap_err()
                .to_string()
        };
        assert!(e("lr = 2.0").contains("key `lr`"));
        assert!(e("hidden = []").contains("key `hidden`"));
        assert!(e("hidden = [8, -1]").contains("key `hidden`"));
        assert!(e("split = [0.5, 0.5, 0.5]").contains("key `split`"));
        assert!(e("batch_sise = 3").contains("key `batch_sise`: unknown key"));
        assert!(e("d_model = 30\nn_heads = 4").contains("key `n_heads`"));
        assert!(e("schedule = \"linear\"").contains("key `schedule`"));
        assert!(e("step_every = 3").contains("key `step_every`"));
        assert!(e("window = \"8\"").starts_with("h.toml: key `window`: expected"));
        let h = Hyper::from_toml(
            "window = 4\nsplit = [0.6, 0.2, 0.2]\nschedule = \"step\"\nstep_every = 2\nhidden = [8]",
            "h.toml",
            ModelKind::Mlp,
        )
        .unwrap();
        assert_eq!(h.window, 4);
        assert_eq!(
            h.schedule,
            Schedule::Step {
                every: 2,
                gamma: 0.5
            }
        );
        assert_eq!(h.hidden, vec![8]);
        assert_eq!(Hyper::defaults(ModelKind::Gru).window, 16);
    }

    /// Sizes no machine can allocate are refused with their key, before anything is built.
    #[test]
    fn huge_layer_sizes_are_refused_with_their_key() {
        let e = |s: &str, kind| Hyper::from_toml(s, "h.toml", kind).unwrap_err().to_string();
        for (key, kind) in [
            ("d_hidden", ModelKind::Gru),
            ("d_model", ModelKind::Transformer),
            ("d_ff", ModelKind::Transformer),
            ("n_layers", ModelKind::Transformer),
        ] {
            let text = e(&format!("{key} = 9223372036854775807"), kind);
            assert!(text.contains(&format!("key `{key}`")), "{key}: {text}");
        }
        let text = e("hidden = [9223372036854775807]", ModelKind::Mlp);
        assert!(text.contains("key `hidden`"), "{text}");
        let text = e("hidden = [1000000000]", ModelKind::Mlp);
        assert!(
            text.contains("key `hidden`") && text.contains("at most"),
            "{text}"
        );
        for key in ["lr", "min_lr", "weight_decay", "grad_clip", "dropout"] {
            let text = e(&format!("{key} = nan"), ModelKind::Mlp);
            assert!(text.contains(&format!("key `{key}`")), "{key}: {text}");
        }
        let text = e("lr = -0.1", ModelKind::Mlp);
        assert!(text.contains("key `lr`"), "{text}");
    }

    /// `--epochs 18446744073709551615` multiplied by the batches per epoch overflowed: the epoch
    /// count is bounded where it is read.
    #[test]
    fn epochs_are_bounded() {
        let e = check_epochs(usize::MAX).unwrap_err().to_string();
        assert!(e.contains("epochs"), "{e}");
        assert!(e.contains("18446744073709551615"), "{e}");
        assert!(e.contains(&format!("at most {MAX_EPOCHS}")), "{e}");
        let e = check_epochs(0).unwrap_err().to_string();
        assert!(e.contains("at least 1"), "{e}");
        check_epochs(MAX_EPOCHS).unwrap();
        check_epochs(1).unwrap();
    }

    #[test]
    fn schedules() {
        let cfg = TrainingConfig::new(0, 10).with_lr(0.1).with_min_lr(0.001);
        let cos = Schedule::Cosine;
        assert_eq!(cos.lr(&cfg, 0, 100, 10), 0.1);
        assert!((cos.lr(&cfg, 50, 100, 10) - 0.0505).abs() < 1e-12);
        assert!((cos.lr(&cfg, 100, 100, 10) - 0.001).abs() < 1e-12);
        let step = Schedule::Step {
            every: 2,
            gamma: 0.5,
        };
        assert_eq!(step.lr(&cfg, 19, 100, 10), 0.1);
        assert_eq!(step.lr(&cfg, 20, 100, 10), 0.05);
        assert_eq!(step.lr(&cfg, 99, 100, 10), 0.1 * 0.5f64.powi(4));
    }
}
