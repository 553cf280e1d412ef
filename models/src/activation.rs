//! Sigmoid and tanh for the GRU's gates, computed once per call.
//!
//! burn-flex evaluates `sigmoid` and `tanh` element by element through glibc's scalar `expf` and
//! `tanhf`, and burn-autodiff evaluates them a second time in the backward pass (it keeps the
//! input, not the output). In the GRU those two activations were half of a training step
//! (`BENCHMARKS.md`). Here the value and its slope come from one pass of a branch-free kernel
//! the compiler vectorises, on the host for the CPU backends, and the gradient flows through
//!
//! ```text
//! y = (x - x̄) · ȳ' + ȳ          (x̄, ȳ, ȳ' constants: x, f(x), f'(x) without autodiff)
//! ```
//!
//! whose value is exactly `ȳ` (`x - x̄` is exactly zero) and whose derivative is exactly `ȳ'`:
//! three cheap element-wise operations in the backward pass instead of a second `tanhf`. On
//! other backends (wgpu, cuda) the values come from burn's own operations, untracked, and the
//! gradient flows the same way.
//!
//! The kernels' accuracy against `f64` is tested below (a few ulp; see the tests' bounds). They
//! run in AVX2 where the CPU has it (pulp's run-time dispatch; the loops are written scalar and
//! vectorised by the compiler). Rust never fuses a multiply and an add on its own, so every
//! path computes the same IEEE operations and gives the same bits (tested).

use burn::prelude::*;
use burn::tensor::activation;
use burn::tensor::{DType, TensorData};

/// `1 / (1 + e^-x)`.
pub fn sigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    apply(x, Kind::Sigmoid)
}

/// `tanh(x)`.
pub fn tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    apply(x, Kind::Tanh)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sigmoid,
    Tanh,
}

fn apply<const D: usize>(x: Tensor<D>, kind: Kind) -> Tensor<D> {
    // Without autodiff (inference, validation) the slope is not needed.
    let tracked = x.is_autodiff();
    let plain = x.clone().without_autodiff();
    let (value, slope) = match on_host(plain.clone(), kind, tracked) {
        Some(pair) => pair,
        None => on_device(plain.clone(), kind, tracked),
    };
    match slope {
        Some(slope) => (x - plain) * slope + value,
        None => value,
    }
}

/// Flex and ndarray keep tensors in host memory, so the kernel reads them in place.
pub(crate) fn host_backend(device: &Device) -> bool {
    let device = device.clone().without_autodiff();
    if device == Device::flex() {
        return true;
    }
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    if device == Device::ndarray() {
        return true;
    }
    false
}

/// The value, and the slope if `slope` is asked for.
type Pair<const D: usize> = (Tensor<D>, Option<Tensor<D>>);

fn on_host<const D: usize>(x: Tensor<D>, kind: Kind, slope_too: bool) -> Option<Pair<D>> {
    let device = x.device();
    if x.dtype() != DType::F32 || !host_backend(&device) {
        return None;
    }
    let data = x.into_data();
    let shape = data.shape().clone();
    let xs = data.as_slice::<f32>().ok()?;
    let mut value = vec![0f32; xs.len()];
    let mut slope = vec![0f32; xs.len()];
    match kind {
        Kind::Sigmoid => sigmoid_slice(xs, &mut value, &mut slope),
        Kind::Tanh => tanh_slice(xs, &mut value, &mut slope),
    }
    let slope =
        slope_too.then(|| Tensor::from_data(TensorData::new(slope, shape.clone()), &device));
    Some((
        Tensor::from_data(TensorData::new(value, shape), &device),
        slope,
    ))
}

fn on_device<const D: usize>(x: Tensor<D>, kind: Kind, slope_too: bool) -> Pair<D> {
    match kind {
        Kind::Sigmoid => {
            let s = activation::sigmoid(x);
            let slope = slope_too.then(|| s.clone() * (s.clone().neg() + 1.0));
            (s, slope)
        }
        Kind::Tanh => {
            let t = activation::tanh(x);
            let slope = slope_too.then(|| t.clone().powi_scalar(2).neg() + 1.0);
            (t, slope)
        }
    }
}

/// `value[i] = σ(x[i])`, `slope[i] = σ(x[i]) · (1 - σ(x[i]))`.
pub fn sigmoid_slice(x: &[f32], value: &mut [f32], slope: &mut [f32]) {
    pulp::Arch::new().dispatch(Loop {
        kind: Kind::Sigmoid,
        x,
        value,
        slope,
    });
}

/// `value[i] = tanh(x[i])`, `slope[i] = 1 - tanh(x[i])²`.
pub fn tanh_slice(x: &[f32], value: &mut [f32], slope: &mut [f32]) {
    pulp::Arch::new().dispatch(Loop {
        kind: Kind::Tanh,
        x,
        value,
        slope,
    });
}

/// One loop, dispatched to the CPU's vector extensions (`vectorised!`).
struct Loop<'a> {
    kind: Kind,
    x: &'a [f32],
    value: &'a mut [f32],
    slope: &'a mut [f32],
}

vectorised!(Loop => run_loop);

#[inline(always)]
fn run_loop(op: Loop<'_>) {
    match op.kind {
        Kind::Sigmoid => sigmoid_loop(op.x, op.value, op.slope),
        Kind::Tanh => tanh_loop(op.x, op.value, op.slope),
    }
}

/// `1 / (1 + e^-x)`, the expression [`sigmoid_slice`] evaluates.
#[inline(always)]
pub(crate) fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
fn sigmoid_loop(x: &[f32], value: &mut [f32], slope: &mut [f32]) {
    assert!(x.len() == value.len() && x.len() == slope.len());
    for ((&x, v), d) in x.iter().zip(value.iter_mut()).zip(slope.iter_mut()) {
        let s = sigmoid_f32(x);
        *v = s;
        *d = s * (1.0 - s);
    }
}

#[inline(always)]
fn tanh_loop(x: &[f32], value: &mut [f32], slope: &mut [f32]) {
    assert!(x.len() == value.len() && x.len() == slope.len());
    for ((&x, v), d) in x.iter().zip(value.iter_mut()).zip(slope.iter_mut()) {
        let t = tanh_f32(x);
        *v = t;
        *d = 1.0 - t * t;
    }
}

/// tanh: an odd polynomial below |x| = 0.625, `1 - 2 / (e^2|x| + 1)` above (the split and the
/// polynomial of Cephes' `tanhf`). Both branches are computed and one is selected, so the loop
/// has no jumps.
#[inline(always)]
pub(crate) fn tanh_f32(x: f32) -> f32 {
    let a = x.abs();
    let z = x * x;
    let p = ((((-5.704_988_7e-3 * z + 2.063_909e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1)
        * z
        - 3.333_328e-1)
        * z;
    let small = x + x * p;
    let large = (1.0 - 2.0 / (exp(2.0 * a) + 1.0)).copysign(x);
    if a < 0.625 { small } else { large }
}

/// e^x for f32 without a library call: x = n·ln 2 + r with |r| ≤ ln 2 / 2 (ln 2 split in two
/// for an exact product), e^r by Cephes' degree-6 polynomial for `expf`, 2^n written into the
/// exponent bits. Inputs are clamped to [-87, 88], where 2^n stays a normal number; sigmoid and
/// tanh saturate long before either end.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer without a libm call; the
    // integer is then in the low bits of the sum's mantissa.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = (((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5)
        * r
        * r
        + r
        + 1.0;
    let n = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    p * f32::from_bits(((n + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every f32 on a fine grid over the range that matters, plus the tails.
    fn grid() -> Vec<f32> {
        let mut xs: Vec<f32> = (-400_000..=400_000).map(|i| i as f32 * 5e-5).collect();
        xs.extend([
            -100.0, -88.5, -50.0, -9.0, 9.0, 50.0, 88.5, 100.0, 1e-30, -1e-30, 0.0,
        ]);
        xs.extend((1..40).map(|k| 2f32.powi(-k)));
        xs
    }

    fn rel(a: f64, b: f64) -> f64 {
        if a == b {
            0.0
        } else {
            (a - b).abs() / b.abs().max(f64::MIN_POSITIVE)
        }
    }

    #[test]
    fn exp_is_within_two_ulp_over_its_range() {
        let mut worst = (0.0, 0.0f32);
        for i in -86_999..=87_999 {
            let x = i as f32 * 1e-3;
            let e = rel(exp(x) as f64, (x as f64).exp());
            if e > worst.0 {
                worst = (e, x);
            }
        }
        // f32's ulp is 2^-23 ≈ 1.19e-7 relative.
        assert!(
            worst.0 < 2.5e-7,
            "exp worst relative error {:.3e} at x = {}",
            worst.0,
            worst.1
        );
    }

    #[test]
    fn sigmoid_and_its_slope_match_f64() {
        let xs = grid();
        let (mut v, mut d) = (vec![0.0; xs.len()], vec![0.0; xs.len()]);
        sigmoid_slice(&xs, &mut v, &mut d);
        let (mut worst_v, mut worst_d) = (0.0f64, 0.0f64);
        for ((&x, &v), &d) in xs.iter().zip(&v).zip(&d) {
            let s = 1.0 / (1.0 + (-(x as f64)).exp());
            if x >= -87.0 {
                worst_v = worst_v.max(rel(v as f64, s));
            } else {
                // σ(x) < 2^-125 there: exp's clamp returns about 1e-38 instead of a subnormal.
                assert!((v as f64 - s).abs() < 2e-38, "sigmoid({x}) = {v}, f64 {s}");
            }
            // The slope s(1 - s) inherits the rounding of 1 - s near s = 1: compare absolutely.
            worst_d = worst_d.max((d as f64 - s * (1.0 - s)).abs());
            assert!((0.0..=1.0).contains(&v), "sigmoid({x}) = {v}");
        }
        assert!(worst_v < 5e-7, "sigmoid worst relative error {worst_v:.3e}");
        assert!(
            worst_d < 1e-7,
            "sigmoid slope worst absolute error {worst_d:.3e}"
        );
    }

    #[test]
    fn tanh_and_its_slope_match_f64() {
        let xs = grid();
        let (mut v, mut d) = (vec![0.0; xs.len()], vec![0.0; xs.len()]);
        tanh_slice(&xs, &mut v, &mut d);
        let (mut worst_v, mut at, mut worst_d) = (0.0f64, 0.0f32, 0.0f64);
        for ((&x, &v), &d) in xs.iter().zip(&v).zip(&d) {
            let t = (x as f64).tanh();
            let e = rel(v as f64, t);
            if e > worst_v {
                (worst_v, at) = (e, x);
            }
            worst_d = worst_d.max((d as f64 - (1.0 - t * t)).abs());
            assert!((-1.0..=1.0).contains(&v), "tanh({x}) = {v}");
            assert_eq!(
                v.is_sign_negative(),
                x.is_sign_negative(),
                "tanh({x}) = {v}"
            );
        }
        assert!(
            worst_v < 5e-7,
            "tanh worst relative error {worst_v:.3e} at x = {at}"
        );
        assert!(
            worst_d < 2e-7,
            "tanh slope worst absolute error {worst_d:.3e}"
        );
    }

    /// The dispatched (AVX2 here) and the plain scalar loops give the same bits.
    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        let xs = grid();
        let n = xs.len();
        type Kernel = fn(&[f32], &mut [f32], &mut [f32]);
        let pairs: [(&str, Kernel, Kernel); 2] = [
            ("sigmoid", sigmoid_slice, sigmoid_loop),
            ("tanh", tanh_slice, tanh_loop),
        ];
        for (name, dispatched, scalar) in pairs {
            let (mut v1, mut d1, mut v2, mut d2) =
                (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            dispatched(&xs, &mut v1, &mut d1);
            scalar(&xs, &mut v2, &mut d2);
            for i in 0..n {
                assert_eq!(
                    v1[i].to_bits(),
                    v2[i].to_bits(),
                    "{name}({}): {} vs {}",
                    xs[i],
                    v1[i],
                    v2[i]
                );
                assert_eq!(
                    d1[i].to_bits(),
                    d2[i].to_bits(),
                    "{name}'({}): {} vs {}",
                    xs[i],
                    d1[i],
                    d2[i]
                );
            }
        }
    }

    /// Values and gradients through [`sigmoid`]/[`tanh`] against burn's own activations on the
    /// autodiff backend.
    #[test]
    fn gradients_match_burns_activations() {
        let device = Device::flex().autodiff();
        let n = 4_096;
        let xs: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * 4e-3).collect();
        let ws: Vec<f32> = (0..n).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
        type Act = fn(Tensor<1>) -> Tensor<1>;
        let pairs: [(&str, Act, Act); 2] = [
            ("sigmoid", sigmoid::<1>, activation::sigmoid::<1>),
            ("tanh", tanh::<1>, activation::tanh::<1>),
        ];
        for (name, ours, theirs) in pairs {
            let run = |f: Act| {
                let x = Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &device)
                    .require_grad();
                let w = Tensor::<1>::from_data(TensorData::new(ws.clone(), [n]), &device);
                let y = f(x.clone());
                let grads = (y.clone() * w).sum().backward();
                let g = x.grad(&grads).expect("x has a gradient");
                (
                    y.into_data().try_into_vec::<f32>().unwrap(),
                    g.into_data().try_into_vec::<f32>().unwrap(),
                )
            };
            let (yo, go) = run(ours);
            let (yt, gt) = run(theirs);
            for i in 0..n {
                assert!(
                    (yo[i] - yt[i]).abs() <= 2e-7,
                    "{name}({}): {} vs burn {}",
                    xs[i],
                    yo[i],
                    yt[i]
                );
                assert!(
                    (go[i] - gt[i]).abs() <= 2e-6 * ws[i].abs().max(1.0),
                    "{name}'({}): gradient {} vs burn {}",
                    xs[i],
                    go[i],
                    gt[i]
                );
            }
            assert!(go.iter().any(|&g| g != 0.0), "{name}: all gradients zero");
        }
    }
}
