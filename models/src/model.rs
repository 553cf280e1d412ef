//! The four models. Each reads `[batch, window, features]` and returns one number per sample,
//! `[batch, 1]`: a standardised prediction for regression, a logit for classification. The
//! flat models (linear, MLP) read the window flattened, so with `window = 1` they see the
//! current row only.

use burn::module::Param;
use burn::nn::gru::{Gru, GruConfig};
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig, Relu};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ModelKind;

/// Linear baseline: one affine map of the flattened window.
#[derive(Config, Debug)]
pub struct LinearModelConfig {
    /// `window * features`
    pub d_input: usize,
}

#[derive(Module, Debug)]
pub struct LinearModel {
    head: Linear,
}

impl LinearModelConfig {
    pub fn init(&self, device: &Device) -> LinearModel {
        LinearModel {
            head: LinearConfig::new(self.d_input, 1).init(device),
        }
    }
}

impl LinearModel {
    /// - x: `[batch, window, features]`
    /// - out: `[batch, 1]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let [b, w, f] = x.dims();
        self.head.forward(x.reshape([b, w * f]))
    }
}

/// Multi-layer perceptron: `hidden.len()` layers of Linear → ReLU → Dropout, then a linear head.
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// `window * features`
    pub d_input: usize,
    pub hidden: Vec<usize>,
    #[config(default = 0.1)]
    pub dropout: f64,
}

#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    activation: Relu,
    dropout: Dropout,
    head: Linear,
}

impl MlpConfig {
    pub fn init(&self, device: &Device) -> Mlp {
        let mut d = self.d_input;
        let mut layers = Vec::with_capacity(self.hidden.len());
        for &h in &self.hidden {
            layers.push(LinearConfig::new(d, h).init(device));
            d = h;
        }
        Mlp {
            layers,
            activation: Relu::new(),
            dropout: DropoutConfig::new(self.dropout).init(),
            head: LinearConfig::new(d, 1).init(device),
        }
    }
}

impl Mlp {
    /// - x: `[batch, window, features]`
    /// - out: `[batch, 1]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let [b, w, f] = x.dims();
        let mut h = x.reshape([b, w * f]); // [batch, window * features]
        for layer in &self.layers {
            h = self
                .dropout
                .forward(self.activation.forward(layer.forward(h))); // [batch, hidden_i]
        }
        self.head.forward(h)
    }
}

/// A GRU over the window; the hidden state after the last row feeds a linear head.
#[derive(Config, Debug)]
pub struct GruModelConfig {
    pub d_input: usize,
    pub d_hidden: usize,
    #[config(default = 0.1)]
    pub dropout: f64,
}

#[derive(Module, Debug)]
pub struct GruModel {
    gru: Gru,
    dropout: Dropout,
    head: Linear,
}

impl GruModelConfig {
    pub fn init(&self, device: &Device) -> GruModel {
        GruModel {
            gru: GruConfig::new(self.d_input, self.d_hidden, true).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            head: LinearConfig::new(self.d_hidden, 1).init(device),
        }
    }
}

impl GruModel {
    /// - x: `[batch, window, features]`
    /// - out: `[batch, 1]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let [b, w, _] = x.dims();
        let h = self.gru.forward(x, None); // [batch, window, hidden]
        let [_, _, d] = h.dims();
        let last = h.narrow(1, w - 1, 1).reshape([b, d]); // [batch, hidden]
        self.head.forward(self.dropout.forward(last))
    }
}

/// A Transformer encoder over the window: project each row to `d_model`, add a learned
/// position embedding, encode (pre-norm), read the last position through a linear head.
#[derive(Config, Debug)]
pub struct TransformerModelConfig {
    pub d_input: usize,
    pub window: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_layers: usize,
    pub d_ff: usize,
    #[config(default = 0.1)]
    pub dropout: f64,
}

#[derive(Module, Debug)]
pub struct TransformerModel {
    input: Linear,
    /// `[window, d_model]`
    position: Param<Tensor<2>>,
    encoder: TransformerEncoder,
    head: Linear,
}

impl TransformerModelConfig {
    pub fn init(&self, device: &Device) -> TransformerModel {
        TransformerModel {
            input: LinearConfig::new(self.d_input, self.d_model).init(device),
            position: Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            }
            .init([self.window, self.d_model], device),
            encoder: TransformerEncoderConfig::new(
                self.d_model,
                self.d_ff,
                self.n_heads,
                self.n_layers,
            )
            .with_dropout(self.dropout)
            .with_norm_first(true)
            .init(device),
            head: LinearConfig::new(self.d_model, 1).init(device),
        }
    }
}

impl TransformerModel {
    /// - x: `[batch, window, features]`
    /// - out: `[batch, 1]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let [b, w, _] = x.dims();
        let h = self.input.forward(x); // [batch, window, d_model]
        let [_, _, d] = h.dims();
        let pos = self.position.val().unsqueeze_dim::<3>(0).expand([b, w, d]); // [batch, window, d_model]
        let h = self.encoder.forward(TransformerEncoderInput::new(h + pos)); // [batch, window, d_model]
        let last = h.narrow(1, w - 1, 1).reshape([b, d]); // [batch, d_model]
        self.head.forward(last)
    }
}

/// Any of the four, so that the training loop, the artifact and the predictor have one type.
#[derive(Module, Debug)]
pub enum Model {
    Linear(LinearModel),
    Mlp(Mlp),
    Gru(GruModel),
    Transformer(TransformerModel),
}

impl Model {
    /// - x: `[batch, window, features]`
    /// - out: `[batch, 1]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        match self {
            Model::Linear(m) => m.forward(x),
            Model::Mlp(m) => m.forward(x),
            Model::Gru(m) => m.forward(x),
            Model::Transformer(m) => m.forward(x),
        }
    }
}

/// The configuration of any of the four, as saved in `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ModelConfig {
    Linear(LinearModelConfig),
    Mlp(MlpConfig),
    Gru(GruModelConfig),
    Transformer(TransformerModelConfig),
}

impl ModelConfig {
    pub fn kind(&self) -> ModelKind {
        match self {
            ModelConfig::Linear(_) => ModelKind::Linear,
            ModelConfig::Mlp(_) => ModelKind::Mlp,
            ModelConfig::Gru(_) => ModelKind::Gru,
            ModelConfig::Transformer(_) => ModelKind::Transformer,
        }
    }

    pub fn init(&self, device: &Device) -> Model {
        match self {
            ModelConfig::Linear(c) => Model::Linear(c.init(device)),
            ModelConfig::Mlp(c) => Model::Mlp(c.init(device)),
            ModelConfig::Gru(c) => Model::Gru(c.init(device)),
            ModelConfig::Transformer(c) => Model::Transformer(c.init(device)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_maps_a_window_batch_to_one_output_each() {
        let device = crate::Backend::default().device().unwrap();
        let _guard = crate::training::rng_lock();
        let (w, f) = (5, 3);
        let configs = [
            ModelConfig::Linear(LinearModelConfig::new(w * f)),
            ModelConfig::Mlp(MlpConfig::new(w * f, vec![8, 4])),
            ModelConfig::Gru(GruModelConfig::new(f, 6)),
            ModelConfig::Transformer(TransformerModelConfig::new(f, w, 8, 2, 1, 16)),
        ];
        for cfg in configs {
            let model = cfg.init(&device);
            let out = model.forward(Tensor::zeros([4, w, f], &device));
            assert_eq!(out.dims(), [4, 1], "{:?}", cfg.kind());
            let json = serde_json::to_string(&cfg).unwrap();
            let back: ModelConfig = serde_json::from_str(&json).unwrap();
            assert_eq!(back.kind(), cfg.kind());
        }
    }
}
