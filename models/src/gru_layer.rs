//! The GRU layer over a whole window as one differentiable operation on burn-flex.
//!
//! Written with burn's tensor operations, a window of 16 steps is about 15 operations per step
//! forward and as many backward, each a small kernel with its own allocation, and burn-flex runs
//! the step's `[256 × 64]·[64 × 192]` product on one thread however many it has. Here the layer
//! is one operation of burn's backend-extension API with a hand-written backward pass
//! (back-propagation through time):
//!
//! - **forward**: the input side of every step in one product (`[window·rows, features]·
//!   [features, 3·hidden]`, as PyTorch's `nn.GRU` does), then per step one product for the
//!   hidden side and one fused pass for the gates, the new state and what the backward pass
//!   keeps (`r`, `z`, `n`, the hidden side of `n` and the previous state);
//! - **backward**: per step one fused pass for the gates' gradients and one product carrying the
//!   state's gradient back; the weights' gradients from two products over all steps at once.
//!
//! The batch is cut into chunks of [`chunk_rows`] rows, which run on rayon's pool: rows of a GRU
//! are independent, so the chunks only meet when the weights' gradients are summed, in chunk
//! order. The chunk size depends on the batch size only, never on the thread count, so one and
//! many threads give the same bits. Products go through burn-flex's own matrix product (the gemm
//! crate).
//!
//! Equations ([`crate::model::GruModel`], PyTorch's `nn.GRU` cell), with `a·` the pre-activations:
//!
//! ```text
//! r, z = σ(x·W_ir + b_ir + h·W_hr + b_hr), σ(x·W_iz + b_iz + h·W_hz + b_hz)
//! hn   = h·W_hn + b_hn
//! n    = tanh(x·W_in + b_in + r ⊙ hn)
//! h'   = n + z ⊙ (h − n)
//!
//! backward, from dh' (the gradient of h'):
//! dn = dh'(1 − z)   dz = dh'(h − n)   da_n = dn(1 − n²)   dhn = da_n·r   dr = da_n·hn
//! da_r = dr·r(1 − r)   da_z = dz·z(1 − z)
//! dh = dh'·z + [da_r | da_z | dhn]·[W_hrz | W_hn]ᵀ
//! ```
//!
//! Other backends (wgpu, cuda, ndarray) and other float types run the same cell written with
//! burn's operations ([`crate::model::GruModel::last_hidden_ops`]); the tests below hold the two
//! to each other, values and gradients.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Dispatch, ExtensionType, Flex, backend_extension};
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

use crate::activation::{sigmoid_f32, tanh_f32};

/// Rows per chunk of work for a batch of `batch` rows (see the module docs): half the batch,
/// between 16 and 64 rows, so that `dexlab train`'s default batch of 64 runs as two chunks.
/// A function of the batch size only, never of the thread count.
///
/// Measured with `models-bench --what train --model gru --batch 64` (samples/s, 1 and 2
/// threads): one chunk of 64 rows 46.5k and 46.8k; two of 32 40.2k and 65.6k; four of 16 38.4k
/// and 68.9k. At batch 256, chunks of 64 rows.
pub fn chunk_rows(batch: usize) -> usize {
    batch.div_ceil(2).clamp(16, 64)
}

/// The layer's inputs: the window batch and the four linear maps of the cell.
#[derive(ExtensionType)]
pub struct GruInputs<B: burn::backend::Backend> {
    /// `[batch, window, features]`
    pub x: FloatTensor<B>,
    /// `[features, 2·hidden]`, `[2·hidden]`
    pub w_irz: FloatTensor<B>,
    pub b_irz: FloatTensor<B>,
    /// `[features, hidden]`, `[hidden]`
    pub w_in: FloatTensor<B>,
    pub b_in: FloatTensor<B>,
    /// `[hidden, 2·hidden]`, `[2·hidden]`
    pub w_hrz: FloatTensor<B>,
    pub b_hrz: FloatTensor<B>,
    /// `[hidden, hidden]`, `[hidden]`
    pub w_hn: FloatTensor<B>,
    pub b_hn: FloatTensor<B>,
}

impl<B: burn::backend::Backend> GruInputs<B> {
    /// The tensors in declaration order: the order of [`Host::new`] and of the backward pass's
    /// parents.
    fn parts(&self) -> [&FloatTensor<B>; 9] {
        [
            &self.x,
            &self.w_irz,
            &self.b_irz,
            &self.w_in,
            &self.b_in,
            &self.w_hrz,
            &self.b_hrz,
            &self.w_hn,
            &self.b_hn,
        ]
    }
}

/// The GRU layer as a backend operation.
#[backend_extension(Autodiff, Flex)]
pub trait GruLayerBackend: burn::backend::Backend {
    /// The hidden state after the window's last row, from a zero state: `[batch, hidden]`.
    fn gru_last_hidden(#[extension_type] inputs: GruInputs<Self>) -> FloatTensor<Self>;
}

impl GruLayerBackend for Flex {
    fn gru_last_hidden(inputs: GruInputs<Self>) -> FloatTensor<Self> {
        forward(&Host::new(inputs.parts()), false).0
    }
}

impl<C: CheckpointStrategy> GruLayerBackend for Autodiff<Flex, C> {
    fn gru_last_hidden(inputs: GruInputs<Self>) -> FloatTensor<Self> {
        let p = inputs.parts();
        let nodes = p.map(|t| t.node());
        let host = Host::new(p.map(|t| t.primitive()));
        match GruBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (out, tape) = forward(&host, true);
                let tape = tape.expect("a tape was asked for");
                prep.finish(Arc::new(Saved { host, tape }), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(&host, false).0),
        }
    }
}

/// Whether [`last_hidden`] runs on `x`'s device and float type (burn-flex, f32).
pub fn supported(x: &Tensor<3>) -> bool {
    x.dtype() == DType::F32 && x.device().without_autodiff() == Device::flex()
}

/// The hidden state after the window's last row, from a zero state.
/// - x: `[batch, window, features]`
/// - out: `[batch, hidden]`
///
/// Panics unless [`supported`]; the linear maps must have biases.
pub fn last_hidden(
    x: Tensor<3>,
    input_rz: &Linear,
    input_n: &Linear,
    hidden_rz: &Linear,
    hidden_n: &Linear,
) -> Tensor<2> {
    let parts = |l: &Linear| {
        let bias = l.bias.as_ref().expect("the GRU's linear maps have biases");
        (l.weight.val().into_dispatch(), bias.val().into_dispatch())
    };
    let (w_irz, b_irz) = parts(input_rz);
    let (w_in, b_in) = parts(input_n);
    let (w_hrz, b_hrz) = parts(hidden_rz);
    let (w_hn, b_hn) = parts(hidden_n);
    Tensor::from_dispatch(<Dispatch as GruLayerBackend>::gru_last_hidden(GruInputs {
        x: x.into_dispatch(),
        w_irz,
        b_irz,
        w_in,
        b_in,
        w_hrz,
        b_hrz,
        w_hn,
        b_hn,
    }))
}

/// Shapes of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dims {
    batch: usize,
    window: usize,
    features: usize,
    hidden: usize,
}

impl Dims {
    fn chunks(&self) -> impl ParallelIterator<Item = (usize, usize)> + use<> {
        let batch = self.batch;
        let chunk = chunk_rows(batch);
        (0..batch.div_ceil(chunk))
            .into_par_iter()
            .map(move |c| (c * chunk, chunk.min(batch - c * chunk)))
    }
}

/// The inputs on the host, with the weights laid out for one product per side.
#[derive(Debug)]
struct Host {
    dims: Dims,
    /// `[batch, window, features]`, contiguous
    x: FlexTensor,
    /// `[W_irz | W_in]`: `[features, 3·hidden]`
    wi: FlexTensor,
    /// `[b_irz | b_in]`
    bi: Vec<f32>,
    /// `[W_hrz | W_hn]`: `[hidden, 3·hidden]`
    wh: FlexTensor,
    /// `[b_hrz | b_hn]`
    bh: Vec<f32>,
}

fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("a contiguous f32 tensor (GruInputs are made contiguous)")
}

fn contiguous(t: &FlexTensor) -> FlexTensor {
    assert_eq!(t.dtype(), DType::F32, "the fused GRU runs in f32");
    if t.as_slice::<f32>().is_some() {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

fn matrix(values: Vec<f32>, rows: usize, cols: usize) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, [rows, cols]))
}

/// `[a | b]` by columns: `a` is `[rows, ca]`, `b` is `[rows, cb]`.
fn side_by_side(a: &[f32], ca: usize, b: &[f32], cb: usize) -> Vec<f32> {
    let rows = a.len() / ca;
    assert_eq!(b.len(), rows * cb);
    let mut out = Vec::with_capacity(rows * (ca + cb));
    for (ra, rb) in a.chunks_exact(ca).zip(b.chunks_exact(cb)) {
        out.extend_from_slice(ra);
        out.extend_from_slice(rb);
    }
    out
}

impl Host {
    /// From `[x, w_irz, b_irz, w_in, b_in, w_hrz, b_hrz, w_hn, b_hn]`.
    fn new(p: [&FlexTensor; 9]) -> Self {
        let [x, w_irz, b_irz, w_in, b_in, w_hrz, b_hrz, w_hn, b_hn] = p.map(contiguous);
        let shape = x.layout().shape();
        assert_eq!(shape.num_dims(), 3, "x: [batch, window, features]");
        let (batch, window, features) = (shape[0], shape[1], shape[2]);
        let hidden = w_hn.layout().shape()[0];
        let dims = Dims {
            batch,
            window,
            features,
            hidden,
        };
        let h = hidden;
        for (name, t, want) in [
            ("w_irz", &w_irz, vec![features, 2 * h]),
            ("b_irz", &b_irz, vec![2 * h]),
            ("w_in", &w_in, vec![features, h]),
            ("b_in", &b_in, vec![h]),
            ("w_hrz", &w_hrz, vec![h, 2 * h]),
            ("b_hrz", &b_hrz, vec![2 * h]),
            ("w_hn", &w_hn, vec![h, h]),
            ("b_hn", &b_hn, vec![h]),
        ] {
            assert_eq!(t.layout().shape().to_vec(), want, "GRU {name}: shape");
        }
        Host {
            dims,
            wi: matrix(
                side_by_side(values(&w_irz), 2 * h, values(&w_in), h),
                features,
                3 * h,
            ),
            bi: [values(&b_irz), values(&b_in)].concat(),
            wh: matrix(
                side_by_side(values(&w_hrz), 2 * h, values(&w_hn), h),
                h,
                3 * h,
            ),
            bh: [values(&b_hrz), values(&b_hn)].concat(),
            x,
        }
    }
}

/// What the backward pass keeps of one chunk's forward pass; `[window, rows, ·]`, time-major.
struct ChunkTape {
    rows: usize,
    /// `[window·rows, features]`
    x: FlexTensor,
    r: Vec<f32>,
    z: Vec<f32>,
    n: Vec<f32>,
    /// `h·W_hn + b_hn`
    hn: Vec<f32>,
    /// `[(window + 1)·rows, hidden]`: the states before each step, then the last one.
    h: FlexTensor,
}

struct Saved {
    host: Host,
    tape: Vec<ChunkTape>,
}

impl std::fmt::Debug for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saved")
            .field("dims", &self.host.dims)
            .field("chunks", &self.tape.len())
            .finish()
    }
}

/// The layer's output `[batch, hidden]`, and per chunk its tape when `keep`.
fn forward(host: &Host, keep: bool) -> (FlexTensor, Option<Vec<ChunkTape>>) {
    let d = host.dims;
    let chunks: Vec<(Vec<f32>, Option<ChunkTape>)> = d
        .chunks()
        .map(|(lo, rows)| forward_chunk(host, lo, rows, keep))
        .collect();
    let mut out = Vec::with_capacity(d.batch * d.hidden);
    let mut tapes = Vec::with_capacity(chunks.len());
    for (last, tape) in chunks {
        out.extend_from_slice(&last);
        tapes.extend(tape);
    }
    (matrix(out, d.batch, d.hidden), keep.then_some(tapes))
}

fn forward_chunk(host: &Host, lo: usize, rows: usize, keep: bool) -> (Vec<f32>, Option<ChunkTape>) {
    let Dims {
        window: w,
        features: f,
        hidden: h,
        ..
    } = host.dims;
    // Time-major rows of this chunk: [window, rows, features].
    let x_all = values(&host.x);
    let mut x = Vec::with_capacity(w * rows * f);
    for t in 0..w {
        for i in lo..lo + rows {
            let at = (i * w + t) * f;
            x.extend_from_slice(&x_all[at..at + f]);
        }
    }
    // The input side of every step: [window·rows, 3·hidden].
    let x = matrix(x, w * rows, f);
    let xi = Flex::float_matmul(x.clone(), host.wi.clone());
    let xi = values(&xi);
    let steps = if keep { w } else { 1 };
    let mut r = vec![0f32; steps * rows * h];
    let mut z = vec![0f32; steps * rows * h];
    let mut n = vec![0f32; steps * rows * h];
    let mut hn = vec![0f32; steps * rows * h];
    let mut states = vec![
        0f32;
        if keep {
            (w + 1) * rows * h
        } else {
            2 * rows * h
        }
    ];
    let arch = pulp::Arch::new();
    for t in 0..w {
        // Where step t reads its state and writes the next, and where its tape goes.
        let (from, to) = if keep {
            (t, t + 1)
        } else {
            (t % 2, (t + 1) % 2)
        };
        let k = if keep { t } else { 0 };
        let prev = &states[from * rows * h..(from + 1) * rows * h];
        let hh = Flex::float_matmul(matrix(prev.to_vec(), rows, h), host.wh.clone());
        let hh = values(&hh);
        let mut next = vec![0f32; rows * h];
        let tape = k * rows * h..(k + 1) * rows * h;
        arch.dispatch(StepForward {
            h,
            xi: &xi[t * rows * 3 * h..(t + 1) * rows * 3 * h],
            bi: &host.bi,
            hh,
            bh: &host.bh,
            prev,
            next: &mut next,
            tape: [
                &mut r[tape.clone()],
                &mut z[tape.clone()],
                &mut n[tape.clone()],
                &mut hn[tape.clone()],
            ],
        });
        states[to * rows * h..(to + 1) * rows * h].copy_from_slice(&next);
    }
    let last_at = if keep { w } else { w % 2 };
    let last = states[last_at * rows * h..(last_at + 1) * rows * h].to_vec();
    // Not `then_some`: the tape's shapes only hold when it was kept.
    let tape = if keep {
        Some(ChunkTape {
            rows,
            x,
            r,
            z,
            n,
            hn,
            h: matrix(states, (w + 1) * rows, h),
        })
    } else {
        None
    };
    (last, tape)
}

/// One step's gates and new state for every row of a chunk, dispatched to the CPU's vector
/// extensions (`vectorised!`; a closure passed to `dispatch` was not inlined and ran in SSE2).
/// - xi, hh: `[rows, 3·hidden]` input and hidden sides (without biases)
/// - prev, next: `[rows, hidden]`
/// - tape: `r`, `z`, `n`, `hn`, each `[rows, hidden]`
struct StepForward<'a> {
    h: usize,
    xi: &'a [f32],
    bi: &'a [f32],
    hh: &'a [f32],
    bh: &'a [f32],
    prev: &'a [f32],
    next: &'a mut [f32],
    tape: [&'a mut [f32]; 4],
}

vectorised!(StepForward => step_forward);

#[inline(always)]
fn step_forward(op: StepForward<'_>) {
    let StepForward {
        h,
        xi,
        bi,
        hh,
        bh,
        prev,
        next,
        tape,
    } = op;
    let [r_out, z_out, n_out, hn_out] = tape;
    let (bir, biz, bin) = (&bi[..h], &bi[h..2 * h], &bi[2 * h..3 * h]);
    let (bhr, bhz, bhn) = (&bh[..h], &bh[h..2 * h], &bh[2 * h..3 * h]);
    let rows = prev.len() / h;
    for i in 0..rows {
        let xi = &xi[i * 3 * h..(i + 1) * 3 * h];
        let hh = &hh[i * 3 * h..(i + 1) * 3 * h];
        let (xr, xz, xn) = (&xi[..h], &xi[h..2 * h], &xi[2 * h..]);
        let (hr, hz, hnl) = (&hh[..h], &hh[h..2 * h], &hh[2 * h..]);
        let row = i * h..(i + 1) * h;
        let p = &prev[row.clone()];
        let nx = &mut next[row.clone()];
        let ro = &mut r_out[row.clone()];
        let zo = &mut z_out[row.clone()];
        let no = &mut n_out[row.clone()];
        let ho = &mut hn_out[row];
        for j in 0..h {
            let r = sigmoid_f32((xr[j] + bir[j]) + (hr[j] + bhr[j]));
            let z = sigmoid_f32((xz[j] + biz[j]) + (hz[j] + bhz[j]));
            let hn = hnl[j] + bhn[j];
            let n = tanh_f32((xn[j] + bin[j]) + r * hn);
            nx[j] = n + z * (p[j] - n);
            ro[j] = r;
            zo[j] = z;
            no[j] = n;
            ho[j] = hn;
        }
    }
}

/// The layer's backward pass; parents in [`GruInputs`] order.
#[derive(Debug)]
struct GruBackward;

impl Backward<Flex, 9> for GruBackward {
    type State = Arc<Saved>;

    fn backward(self, ops: Ops<Self::State, 9>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dh = grads.consume::<Flex>(&ops.node);
        let saved = &ops.state;
        let want_x = ops.parents[0].is_some();
        let g = backward(saved, &contiguous(&dh), want_x);
        let Dims {
            features: f,
            hidden: h,
            ..
        } = saved.host.dims;
        // Split the joint gradients back into the parameters' own shapes.
        let (dwi_rz, dwi_n) = split_columns(&g.wi, 3 * h, 2 * h);
        let (dwh_rz, dwh_n) = split_columns(&g.wh, 3 * h, 2 * h);
        let out: [Option<FlexTensor>; 9] = [
            g.x.map(|x| {
                let d = saved.host.dims;
                FlexTensor::from_data(TensorData::new(x, [d.batch, d.window, d.features]))
            }),
            Some(matrix(dwi_rz, f, 2 * h)),
            Some(vector(g.bi[..2 * h].to_vec())),
            Some(matrix(dwi_n, f, h)),
            Some(vector(g.bi[2 * h..].to_vec())),
            Some(matrix(dwh_rz, h, 2 * h)),
            Some(vector(g.bh[..2 * h].to_vec())),
            Some(matrix(dwh_n, h, h)),
            Some(vector(g.bh[2 * h..].to_vec())),
        ];
        for (parent, grad) in ops.parents.iter().zip(out) {
            if let (Some(node), Some(grad)) = (parent, grad) {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

fn vector(values: Vec<f32>) -> FlexTensor {
    let n = values.len();
    FlexTensor::from_data(TensorData::new(values, [n]))
}

/// Columns `[..left]` and `[left..]` of a `[rows, cols]` matrix.
fn split_columns(m: &[f32], cols: usize, left: usize) -> (Vec<f32>, Vec<f32>) {
    let rows = m.len() / cols;
    let mut a = Vec::with_capacity(rows * left);
    let mut b = Vec::with_capacity(rows * (cols - left));
    for row in m.chunks_exact(cols) {
        a.extend_from_slice(&row[..left]);
        b.extend_from_slice(&row[left..]);
    }
    (a, b)
}

/// Gradients of the joint layout: `wi` `[features, 3·hidden]`, `bi` `[3·hidden]`, `wh`
/// `[hidden, 3·hidden]`, `bh` `[3·hidden]`, and `x` `[batch, window, features]` if asked for.
struct Grads {
    x: Option<Vec<f32>>,
    wi: Vec<f32>,
    bi: Vec<f32>,
    wh: Vec<f32>,
    bh: Vec<f32>,
}

fn backward(saved: &Saved, dh: &FlexTensor, want_x: bool) -> Grads {
    let d = saved.host.dims;
    let dh = values(dh);
    assert_eq!(dh.len(), d.batch * d.hidden, "GRU backward: gradient shape");
    let partial: Vec<Grads> = saved
        .tape
        .par_iter()
        .enumerate()
        .map(|(c, tape)| {
            let lo = c * chunk_rows(d.batch);
            backward_chunk(
                &saved.host,
                tape,
                &dh[lo * d.hidden..(lo + tape.rows) * d.hidden],
                want_x,
            )
        })
        .collect();
    // Sum the chunks in order: the same bits whatever the thread count.
    let mut parts = partial.into_iter();
    let mut total = parts.next().expect("a batch has at least one row");
    let mut x = total.x.take().map(|first| {
        let mut x = vec![0f32; d.batch * d.window * d.features];
        scatter_x(&mut x, &first, 0, saved.tape[0].rows, d);
        x
    });
    for (c, part) in parts.enumerate() {
        let c = c + 1;
        add(&mut total.wi, &part.wi);
        add(&mut total.bi, &part.bi);
        add(&mut total.wh, &part.wh);
        add(&mut total.bh, &part.bh);
        if let (Some(x), Some(px)) = (x.as_mut(), part.x) {
            scatter_x(x, &px, c * chunk_rows(d.batch), saved.tape[c].rows, d);
        }
    }
    total.x = x;
    total
}

fn add(into: &mut [f32], from: &[f32]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a += *b;
    }
}

/// A chunk's time-major `[window, rows, features]` gradient into `[batch, window, features]`.
fn scatter_x(x: &mut [f32], chunk: &[f32], lo: usize, rows: usize, d: Dims) {
    let f = d.features;
    for t in 0..d.window {
        for i in 0..rows {
            let from = (t * rows + i) * f;
            let to = ((lo + i) * d.window + t) * f;
            x[to..to + f].copy_from_slice(&chunk[from..from + f]);
        }
    }
}

/// Column sums of a `[rows, cols]` matrix, row by row in order.
fn column_sums(m: &[f32], cols: usize) -> Vec<f32> {
    let mut s = vec![0f32; cols];
    for row in m.chunks_exact(cols) {
        add(&mut s, row);
    }
    s
}

fn backward_chunk(host: &Host, tape: &ChunkTape, dh_last: &[f32], want_x: bool) -> Grads {
    let Dims {
        window: w,
        hidden: h,
        ..
    } = host.dims;
    let rows = tape.rows;
    let step = rows * h;
    // Pre-activation gradients of every step, [window, rows, 3·hidden]: the input side's
    // [da_r | da_z | da_n] and the hidden side's [da_r | da_z | dhn].
    let mut da = vec![0f32; w * rows * 3 * h];
    let mut dhh = vec![0f32; w * rows * 3 * h];
    let wh_t = host.wh.transpose(0, 1);
    let states = values(&tape.h);
    let mut dh = dh_last.to_vec();
    let mut carried = vec![0f32; step];
    let arch = pulp::Arch::new();
    for t in (0..w).rev() {
        let s = t * step..(t + 1) * step;
        let g = t * rows * 3 * h..(t + 1) * rows * 3 * h;
        arch.dispatch(StepBackward {
            h,
            dh: &dh,
            gates: [&tape.r[s.clone()], &tape.z[s.clone()], &tape.n[s.clone()]],
            hn: &tape.hn[s.clone()],
            prev: &states[s.clone()],
            da: &mut da[g.clone()],
            dhh: &mut dhh[g.clone()],
            carried: &mut carried,
        });
        if t > 0 {
            // dh of the previous state: the direct path plus the hidden side's products.
            let back = Flex::float_matmul(matrix(dhh[g].to_vec(), rows, 3 * h), wh_t.clone());
            dh.copy_from_slice(&carried);
            add(&mut dh, values(&back));
        }
    }
    let (bi, bh) = (column_sums(&da, 3 * h), column_sums(&dhh, 3 * h));
    let (da, dhh) = (matrix(da, w * rows, 3 * h), matrix(dhh, w * rows, 3 * h));
    let wh = Flex::float_matmul(tape.h.narrow(0, 0, w * rows).transpose(0, 1), dhh);
    let wi = Flex::float_matmul(tape.x.transpose(0, 1), da.clone());
    let x = want_x.then(|| {
        let dx = Flex::float_matmul(da, host.wi.transpose(0, 1));
        values(&contiguous(&dx)).to_vec()
    });
    Grads {
        x,
        wi: values(&contiguous(&wi)).to_vec(),
        bi,
        wh: values(&contiguous(&wh)).to_vec(),
        bh,
    }
}

/// One step's gradients for every row of a chunk (equations in the module docs), dispatched
/// like [`StepForward`].
/// - dh: `[rows, hidden]`, the gradient of the step's output state
/// - gates: `r`, `z`, `n`; hn; prev (the state before the step): `[rows, hidden]` each
/// - da, dhh: `[rows, 3·hidden]` out; carried: `dh ⊙ z` out, `[rows, hidden]`
struct StepBackward<'a> {
    h: usize,
    dh: &'a [f32],
    gates: [&'a [f32]; 3],
    hn: &'a [f32],
    prev: &'a [f32],
    da: &'a mut [f32],
    dhh: &'a mut [f32],
    carried: &'a mut [f32],
}

vectorised!(StepBackward => step_backward);

#[inline(always)]
fn step_backward(op: StepBackward<'_>) {
    let StepBackward {
        h,
        dh,
        gates,
        hn,
        prev,
        da,
        dhh,
        carried,
    } = op;
    let [r, z, n] = gates;
    let rows = dh.len() / h;
    for i in 0..rows {
        let row = i * h..(i + 1) * h;
        let (dh, r, z, n, hn, p) = (
            &dh[row.clone()],
            &r[row.clone()],
            &z[row.clone()],
            &n[row.clone()],
            &hn[row.clone()],
            &prev[row.clone()],
        );
        let c = &mut carried[row];
        let da = &mut da[i * 3 * h..(i + 1) * 3 * h];
        let dhh = &mut dhh[i * 3 * h..(i + 1) * 3 * h];
        let (da_r, rest) = da.split_at_mut(h);
        let (da_z, da_n) = rest.split_at_mut(h);
        let (dh_r, rest) = dhh.split_at_mut(h);
        let (dh_z, dh_n) = rest.split_at_mut(h);
        let (da_n, dh_n) = (&mut da_n[..h], &mut dh_n[..h]);
        for j in 0..h {
            let (g, r, z, n) = (dh[j], r[j], z[j], n[j]);
            let dn = g * (1.0 - z);
            let dz = g * (p[j] - n);
            let an = dn * (1.0 - n * n);
            let ar = an * hn[j] * (r * (1.0 - r));
            let az = dz * (z * (1.0 - z));
            da_r[j] = ar;
            da_z[j] = az;
            da_n[j] = an;
            dh_r[j] = ar;
            dh_z[j] = az;
            dh_n[j] = an * r;
            c[j] = g * z;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GruModelConfig;

    fn window(b: usize, w: usize, f: usize, device: &Device) -> Tensor<3> {
        // A deterministic spread of values in about [-2, 2].
        let v: Vec<f32> = (0..b * w * f)
            .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 4.0)
            .collect();
        Tensor::from_data(TensorData::new(v, [b, w, f]), device)
    }

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * scale,
                "{what}[{i}]: fused {x}, burn ops {y} (scale {scale})"
            );
        }
    }

    fn vals<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    /// Both paths on the same weights and data: the layer's output, the gradients of all eight
    /// parameter tensors, and the input's gradient, through a loss that weighs every output.
    fn compare(b: usize, w: usize, f: usize, h: usize) {
        let _guard = crate::training::rng_lock();
        let device = Device::flex().autodiff();
        device.seed(11);
        let model = GruModelConfig::new(f, h).init(&device);
        let x = window(b, w, f, &device).require_grad();
        let weigh = Tensor::<2>::from_data(
            TensorData::new(
                (0..b * h).map(|i| (i % 7) as f32 - 3.0).collect::<Vec<_>>(),
                [b, h],
            ),
            &device,
        );
        let fused = model.last_hidden(x.clone());
        let ops = model.last_hidden_ops(x.clone());
        close(&vals(fused.clone()), &vals(ops.clone()), 2e-6, "output");
        let gf = (fused * weigh.clone()).sum().backward();
        let go = (ops * weigh).sum().backward();
        close(
            &vals(x.grad(&gf).unwrap()),
            &vals(x.grad(&go).unwrap()),
            2e-5,
            "dx",
        );
        for (name, lin) in model.linears() {
            close(
                &vals(lin.weight.val().grad(&gf).unwrap()),
                &vals(lin.weight.val().grad(&go).unwrap()),
                2e-5,
                &format!("{name}.weight"),
            );
            let bias = lin.bias.as_ref().unwrap().val();
            close(
                &vals(bias.grad(&gf).unwrap()),
                &vals(bias.grad(&go).unwrap()),
                2e-5,
                &format!("{name}.bias"),
            );
        }
    }

    #[test]
    fn values_and_gradients_match_the_cell_in_burn_ops() {
        compare(8, 5, 3, 4);
    }

    #[test]
    fn the_default_batch_runs_as_two_chunks() {
        assert_eq!(chunk_rows(64), 32); // dexlab train's default batch
        assert_eq!(chunk_rows(256), 64);
        assert_eq!(chunk_rows(1), 16); // one decision: one chunk
        assert_eq!(chunk_rows(20), 16);
    }

    #[test]
    fn several_chunks_and_a_short_last_one_match_too() {
        // 134 rows: chunks of 64, 64 and 6.
        assert_eq!(chunk_rows(134), 64);
        compare(134, 4, 5, 8);
    }

    #[test]
    fn one_step_and_one_row() {
        compare(1, 1, 2, 3);
    }

    #[test]
    fn inference_gives_the_training_forward() {
        let _guard = crate::training::rng_lock();
        let device = Device::flex().autodiff();
        device.seed(3);
        let model = GruModelConfig::new(6, 8).init(&device);
        let x = window(73, 7, 6, &device); // two chunks of 37 and 36 rows
        let trained = vals(model.last_hidden(x.clone()));
        let plain = model.valid();
        let x = x.without_autodiff();
        assert!(supported(&x));
        assert_eq!(vals(plain.last_hidden(x)), trained);
    }

    /// The step kernels dispatched to the CPU's vector extensions (AVX2 here) and called plainly
    /// (x86-64's SSE2) give the same bits: no fused multiply-add, so the weights a seed gives do
    /// not depend on the CPU's vector width.
    #[test]
    fn vectorised_and_plain_steps_give_the_same_bits() {
        let (rows, h) = (5, 19);
        let v = |n: usize, k: f32| -> Vec<f32> {
            (0..n)
                .map(|i| ((i as f32 * 0.754_877_7 + k).fract() - 0.5) * 6.0)
                .collect()
        };
        let (xi, hh, bi, bh, prev) = (
            v(rows * 3 * h, 0.1),
            v(rows * 3 * h, 0.2),
            v(3 * h, 0.3),
            v(3 * h, 0.4),
            v(rows * h, 0.5),
        );
        let forward = |vectorised: bool| {
            let mut out: [Vec<f32>; 5] = std::array::from_fn(|_| vec![0f32; rows * h]);
            let [next, r, z, n, hn] = out.each_mut().map(|v| v.as_mut_slice());
            let op = StepForward {
                h,
                xi: &xi,
                bi: &bi,
                hh: &hh,
                bh: &bh,
                prev: &prev,
                next,
                tape: [r, z, n, hn],
            };
            if vectorised {
                pulp::Arch::new().dispatch(op);
            } else {
                step_forward(op);
            }
            out.to_vec()
        };
        let (a, b) = (forward(true), forward(false));
        let bits =
            |v: &[Vec<f32>]| -> Vec<u32> { v.concat().iter().map(|x| x.to_bits()).collect() };
        assert_eq!(bits(&a), bits(&b), "forward step");
        let dh = v(rows * h, 0.6);
        let backward = |vectorised: bool| {
            let mut da = vec![0f32; rows * 3 * h];
            let mut dhh = vec![0f32; rows * 3 * h];
            let mut carried = vec![0f32; rows * h];
            let op = StepBackward {
                h,
                dh: &dh,
                gates: [&a[1], &a[2], &a[3]],
                hn: &a[4],
                prev: &prev,
                da: &mut da,
                dhh: &mut dhh,
                carried: &mut carried,
            };
            if vectorised {
                pulp::Arch::new().dispatch(op);
            } else {
                step_backward(op);
            }
            vec![da, dhh, carried]
        };
        assert_eq!(
            bits(&backward(true)),
            bits(&backward(false)),
            "backward step"
        );
    }

    #[test]
    fn one_thread_and_three_give_the_same_bits() {
        let _guard = crate::training::rng_lock();
        let device = Device::flex().autodiff();
        device.seed(5);
        let model = GruModelConfig::new(5, 16).init(&device);
        let x = window(4 * 64 + 3, 6, 5, &device); // five chunks
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let out = model.last_hidden(x.clone());
                let grads = out.clone().powi_scalar(2).sum().backward();
                let mut all = vals(out);
                for (_, lin) in model.linears() {
                    all.extend(vals(lin.weight.val().grad(&grads).unwrap()));
                    all.extend(vals(lin.bias.as_ref().unwrap().val().grad(&grads).unwrap()));
                }
                all
            })
        };
        let (one, three) = (run(1), run(3));
        assert!(
            one.iter()
                .zip(&three)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "results depend on the thread count"
        );
    }
}
