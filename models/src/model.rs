//! The four models. Each reads `[batch, window, features]` and returns one number per sample,
//! `[batch, 1]`: a standardised prediction for regression, a logit for classification. The
//! flat models (linear, MLP) read the window flattened, so with `window = 1` they see the
//! current row only.

use burn::module::Param;
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig, Relu};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ModelKind;
use crate::{activation, dropout, gru_layer};

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
            h = dropout::forward(&self.dropout, self.activation.forward(layer.forward(h))); // [batch, hidden_i]
        }
        self.head.forward(h)
    }
}

/// A GRU over the window; the hidden state after the last row feeds a linear head.
///
/// PyTorch's `nn.GRU` cell, gate for gate (reset gate applied after the hidden product, as
/// `reset_after` in burn's `Gru`), with its initialisation (every weight and bias uniform in
/// ±1/√hidden) and the same parameter count:
///
/// ```text
/// r, z = σ(x·W_ir + b_ir + h·W_hr + b_hr), σ(x·W_iz + b_iz + h·W_hz + b_hz)
/// n    = tanh(x·W_in + b_in + r ⊙ (h·W_hn + b_hn))
/// h'   = n + z ⊙ (h − n)                      (= (1 − z) ⊙ n + z ⊙ h)
/// ```
///
/// Written out here rather than through burn's `Gru` for speed. On burn-flex in f32 (the
/// default CPU backend) the layer is one fused operation with a hand-written backward pass that
/// splits the batch across rayon's threads ([`crate::gru_layer`]); elsewhere it is the same cell
/// in burn's operations ([`GruModel::last_hidden_ops`]): the reset and update gates share one
/// product on each side, only the last hidden state is kept (burn's writes every step into an
/// output tensor), and the activations evaluate once per step ([`crate::activation`]).
#[derive(Config, Debug)]
pub struct GruModelConfig {
    pub d_input: usize,
    pub d_hidden: usize,
    #[config(default = 0.1)]
    pub dropout: f64,
}

#[derive(Module, Debug)]
pub struct GruModel {
    /// `x → [r | z]`, weight `[features, 2·hidden]`
    input_rz: Linear,
    /// `x → n`, weight `[features, hidden]`
    input_n: Linear,
    /// `h → [r | z]`, weight `[hidden, 2·hidden]`
    hidden_rz: Linear,
    /// `h → n`, weight `[hidden, hidden]`
    hidden_n: Linear,
    dropout: Dropout,
    head: Linear,
    d_hidden: usize,
}

impl GruModelConfig {
    pub fn init(&self, device: &Device) -> GruModel {
        let (f, h) = (self.d_input, self.d_hidden);
        let k = 1.0 / (h as f64).sqrt();
        let gate = |d_in, d_out| {
            LinearConfig::new(d_in, d_out)
                .with_initializer(Initializer::Uniform { min: -k, max: k })
                .init(device)
        };
        GruModel {
            input_rz: gate(f, 2 * h),
            input_n: gate(f, h),
            hidden_rz: gate(h, 2 * h),
            hidden_n: gate(h, h),
            dropout: DropoutConfig::new(self.dropout).init(),
            head: LinearConfig::new(h, 1).init(device),
            d_hidden: h,
        }
    }
}

impl GruModel {
    /// - x: `[batch, window, features]`
    /// - out: `[batch, 1]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let h = self.last_hidden(x); // [batch, hidden]
        self.head.forward(dropout::forward(&self.dropout, h))
    }

    /// [`Self::forward`] through [`Self::last_hidden_ops`] on every backend (for comparison).
    pub fn forward_ops(&self, x: Tensor<3>) -> Tensor<2> {
        let h = self.last_hidden_ops(x);
        self.head.forward(dropout::forward(&self.dropout, h))
    }

    /// The hidden state after the window's last row, from a zero state: one fused operation
    /// on burn-flex in f32 ([`crate::gru_layer`]), burn's operations elsewhere.
    /// - x: `[batch, window, features]`
    /// - out: `[batch, hidden]`
    pub fn last_hidden(&self, x: Tensor<3>) -> Tensor<2> {
        if gru_layer::supported(&x) {
            return gru_layer::last_hidden(
                x,
                &self.input_rz,
                &self.input_n,
                &self.hidden_rz,
                &self.hidden_n,
            );
        }
        self.last_hidden_ops(x)
    }

    /// [`Self::last_hidden`] written with burn's tensor operations, step by step: what runs on
    /// the backends the fused layer does not cover, and its reference in tests.
    pub fn last_hidden_ops(&self, x: Tensor<3>) -> Tensor<2> {
        let [b, w, f] = x.dims();
        let d = self.d_hidden;
        let x = x.swap_dims(0, 1); // [window, batch, features]
        let mut h = Tensor::<2>::zeros([b, d], &x.device()); // [batch, hidden]
        for t in 0..w {
            let xt = x.clone().narrow(0, t, 1).reshape([b, f]); // [batch, features]
            let rz = activation::sigmoid(
                self.input_rz.forward(xt.clone()) + self.hidden_rz.forward(h.clone()),
            ); // [batch, 2·hidden]
            let r = rz.clone().narrow(1, 0, d); // [batch, hidden]
            let z = rz.narrow(1, d, d); // [batch, hidden]
            let n =
                activation::tanh(self.input_n.forward(xt) + r * self.hidden_n.forward(h.clone())); // [batch, hidden]
            h = n.clone() + z * (h - n);
        }
        h
    }

    /// The cell's four linear maps, named as the fields.
    #[cfg(test)]
    pub(crate) fn linears(&self) -> [(&'static str, &Linear); 4] {
        [
            ("input_rz", &self.input_rz),
            ("input_n", &self.input_n),
            ("hidden_rz", &self.hidden_rz),
            ("hidden_n", &self.hidden_n),
        ]
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
#[allow(
    clippy::large_enum_variant,
    reason = "one model per training or predictor, moved once per optimiser step: a few hundred \
              bytes against a step's milliseconds; burn's Module derive takes the modules as they are"
)]
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

    /// The GRU against the cell's equations in f64, on the flex backend, weights read back from
    /// the module.
    #[test]
    fn gru_matches_the_cell_equations_in_f64() {
        let device = Device::flex();
        let _guard = crate::training::rng_lock();
        device.seed(11);
        let (b, w, f, d) = (3, 7, 4, 5);
        let model = GruModelConfig::new(f, d).init(&device);
        let xs: Vec<f32> = (0..b * w * f)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let x = Tensor::<3>::from_data(
            burn::tensor::TensorData::new(xs.clone(), [b, w, f]),
            &device,
        );
        let got = model
            .last_hidden(x)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();

        let read = |l: &Linear| {
            let wt = l.weight.val().into_data().try_into_vec::<f32>().unwrap(); // [in, out]
            let bias = l
                .bias
                .as_ref()
                .unwrap()
                .val()
                .into_data()
                .try_into_vec::<f32>()
                .unwrap();
            (wt, bias)
        };
        let affine = |(wt, bias): &(Vec<f32>, Vec<f32>), v: &[f64], j: usize, out: usize| {
            bias[j] as f64
                + v.iter()
                    .enumerate()
                    .map(|(i, &vi)| vi * wt[i * out + j] as f64)
                    .sum::<f64>()
        };
        let (irz, i_n, hrz, h_n) = (
            read(&model.input_rz),
            read(&model.input_n),
            read(&model.hidden_rz),
            read(&model.hidden_n),
        );
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        for s in 0..b {
            let mut h = vec![0.0f64; d];
            for t in 0..w {
                let xt: Vec<f64> = (0..f).map(|k| xs[(s * w + t) * f + k] as f64).collect();
                let mut next = vec![0.0; d];
                for j in 0..d {
                    let r = sig(affine(&irz, &xt, j, 2 * d) + affine(&hrz, &h, j, 2 * d));
                    let z = sig(affine(&irz, &xt, d + j, 2 * d) + affine(&hrz, &h, d + j, 2 * d));
                    let n = (affine(&i_n, &xt, j, d) + r * affine(&h_n, &h, j, d)).tanh();
                    next[j] = (1.0 - z) * n + z * h[j];
                }
                h = next;
            }
            for j in 0..d {
                let g = got[s * d + j] as f64;
                assert!(
                    (g - h[j]).abs() < 2e-6,
                    "sample {s}, unit {j}: {g} vs f64 {}",
                    h[j]
                );
            }
            assert!(
                h.iter().any(|v| v.abs() > 1e-2),
                "the reference state stayed near zero"
            );
        }
        // Same parameter count as PyTorch's nn.GRU(f, d) plus the head.
        assert_eq!(model.num_params(), 3 * d * (f + d) + 6 * d + d + 1);
    }

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
