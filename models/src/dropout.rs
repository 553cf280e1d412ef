//! Dropout with the mask drawn on the host from one seed per call.
//!
//! burn's `Dropout` draws its Bernoulli mask element by element through the backend's seeded
//! ChaCha generator and a distribution sampler: in the MLP's training step (batch 256, two
//! `[256 × 64]` masks) that was 65 % of the time (a `perf` profile, `BENCHMARKS.md`). Here the
//! backend's generator still decides everything (so [`Device::seed`] still fixes the masks),
//! but it draws only a 48-bit seed per call; the mask comes from splitmix64 over a counter
//! (Steele, Lea and Flood's `SplittableRandom` mixer), two 32-bit draws per 64-bit output,
//! in a loop the compiler vectorises.
//!
//! Same semantics as burn's `Dropout::forward`, which it replaces in dexlab's models: active
//! only on an autodiff device, with the layer's `training` flag set and `prob > 0`; each element
//! kept with probability `1 − prob` and scaled by `1 / (1 − prob)`, so `x · mask` gives the
//! bits burn's `x · bernoulli · (1 / (1 − prob))` gives for the same mask. On backends that do not
//! keep tensors in host memory (wgpu, cuda) it is burn's own dropout.

use burn::nn::Dropout;
use burn::prelude::*;
use burn::tensor::Distribution;

use crate::activation::host_backend;

/// `layer` applied to `x` (see the module docs).
pub fn forward<const D: usize>(layer: &Dropout, x: Tensor<D>) -> Tensor<D> {
    if !layer.training.is_enabled() || !x.device().is_autodiff() || layer.prob == 0.0 {
        return x;
    }
    let device = x.device();
    if !host_backend(&device) {
        return layer.forward(x);
    }
    // 2 × 24 bits from the backend's generator: integers below 2^24 are exact in f32.
    let draws = Tensor::<1>::random([2], Distribution::Uniform(0.0, 16_777_216.0), &device)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("two f32 draws");
    let seed = (draws[0].floor() as u64) | ((draws[1].floor() as u64) << 24);
    let shape = x.shape();
    let mut mask = vec![0f32; shape.num_elements()];
    fill_mask(seed, 1.0 - layer.prob, &mut mask);
    x * Tensor::from_data(TensorData::new(mask, shape), &device)
}

/// `mask[i]` = `1 / keep` with probability `keep`, else 0, from `seed`.
pub fn fill_mask(seed: u64, keep: f64, mask: &mut [f32]) {
    // Keep when a uniform 32-bit draw is below keep · 2^32 (keep < 1, so this fits in a u64).
    let threshold = (keep * 4_294_967_296.0).round() as u64;
    let scale = (1.0 / keep) as f32;
    pulp::Arch::new().dispatch(MaskFill {
        seed,
        threshold,
        scale,
        mask,
    });
}

struct MaskFill<'a> {
    seed: u64,
    threshold: u64,
    scale: f32,
    mask: &'a mut [f32],
}

vectorised!(MaskFill => fill);

#[inline(always)]
fn fill(op: MaskFill<'_>) {
    let MaskFill {
        seed,
        threshold,
        scale,
        mask,
    } = op;
    let (pairs, tail) = mask.as_chunks_mut::<2>();
    for (i, pair) in pairs.iter_mut().enumerate() {
        let z = splitmix64(seed, i as u64);
        pair[0] = if (z & 0xFFFF_FFFF) < threshold {
            scale
        } else {
            0.0
        };
        pair[1] = if (z >> 32) < threshold { scale } else { 0.0 };
    }
    if let [last] = tail {
        let z = splitmix64(seed, pairs.len() as u64);
        *last = if (z & 0xFFFF_FFFF) < threshold {
            scale
        } else {
            0.0
        };
    }
}

/// The `i`-th output of splitmix64 started at `seed`.
#[inline(always)]
fn splitmix64(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::DropoutConfig;

    #[test]
    fn keeps_the_expected_share_scaled() {
        let n = 1_000_001; // odd: the tail element too
        let mut mask = vec![0f32; n];
        fill_mask(42, 0.9, &mut mask);
        let kept = mask.iter().filter(|&&m| m != 0.0).count() as f64;
        // Binomial(n, 0.9): σ = 300; 5σ.
        assert!(
            (kept - 0.9 * n as f64).abs() < 1_500.0,
            "kept {kept} of {n}"
        );
        let scale = (1.0 / 0.9f64) as f32;
        assert!(mask.iter().all(|&m| m == 0.0 || m == scale));
        // Neighbours are not correlated: pairs (kept, kept) at 0.81 of the pairs.
        let both = mask
            .windows(2)
            .filter(|w| w[0] != 0.0 && w[1] != 0.0)
            .count() as f64;
        assert!(
            (both / (n - 1) as f64 - 0.81).abs() < 0.002,
            "both kept: {both}"
        );
    }

    #[test]
    fn the_seed_decides_the_mask() {
        let draw = |seed| {
            let mut m = vec![0f32; 1000];
            fill_mask(seed, 0.5, &mut m);
            m
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    /// Only with autodiff: validation and inference see the input unchanged, as with burn's.
    #[test]
    fn inference_is_the_identity_and_training_masks_and_scales() {
        let _guard = crate::training::rng_lock();
        let layer = DropoutConfig::new(0.25).init();
        let plain = Device::flex();
        let x = Tensor::<2>::ones([64, 32], &plain);
        let same = forward(&layer, x.clone()).into_data();
        assert_eq!(same, x.clone().into_data());
        let ad = plain.autodiff();
        ad.seed(1);
        let x = Tensor::<2>::ones([64, 32], &ad).require_grad();
        let y = forward(&layer, x.clone());
        let values = y.clone().into_data().try_into_vec::<f32>().unwrap();
        let scale = (1.0 / 0.75f64) as f32;
        assert!(values.iter().all(|&v| v == 0.0 || v == scale));
        let kept = values.iter().filter(|&&v| v != 0.0).count();
        assert!((1350..1720).contains(&kept), "kept {kept} of 2048");
        // The gradient is the mask.
        let grads = y.sum().backward();
        assert_eq!(
            x.grad(&grads)
                .unwrap()
                .into_data()
                .try_into_vec::<f32>()
                .unwrap(),
            values
        );
        // The backend's seed fixes the masks; the next call draws another one.
        ad.seed(1);
        let again = forward(&layer, Tensor::<2>::ones([64, 32], &ad).require_grad());
        let next = forward(&layer, Tensor::<2>::ones([64, 32], &ad).require_grad());
        assert_eq!(again.into_data().try_into_vec::<f32>().unwrap(), values);
        assert_ne!(next.into_data().try_into_vec::<f32>().unwrap(), values);
    }
}
