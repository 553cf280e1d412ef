//! Ticks and Q64.96 sqrt prices (Uniswap's TickMath), bit for bit.

use alloy_primitives::{I256, U256, uint};

use crate::{MathError, Result};

pub const MIN_TICK: i32 = -887_272;
pub const MAX_TICK: i32 = 887_272;
pub const MIN_SQRT_RATIO: U256 = uint!(4295128739_U256);
pub const MAX_SQRT_RATIO: U256 = uint!(1461446703485210103287273052203988822378723970342_U256);

/// Each bit of `|tick|`'s factor `1.0001^(-2^k / 2)` in Q128.128; every one is below 2^128.
const MULTIPLIERS: [(u32, u128); 19] = [
    (0x2, 0xfff97272373d413259a46990580e213a),
    (0x4, 0xfff2e50f5f656932ef12357cf3c7fdcc),
    (0x8, 0xffe5caca7e10e4e61c3624eaa0941cd0),
    (0x10, 0xffcb9843d60f6159c9db58835c926644),
    (0x20, 0xff973b41fa98c081472e6896dfb254c0),
    (0x40, 0xff2ea16466c96a3843ec78b326b52861),
    (0x80, 0xfe5dee046a99a2a811c461f1969c3053),
    (0x100, 0xfcbe86c7900a88aedcffc83b479aa3a4),
    (0x200, 0xf987a7253ac413176f2b074cf7815e54),
    (0x400, 0xf3392b0822b70005940c7a398e4b70f3),
    (0x800, 0xe7159475a2c29b7443b29c7fa6e889d9),
    (0x1000, 0xd097f3bdfd2022b8845ad8f792aa5825),
    (0x2000, 0xa9f746462d870fdf8a65dc1f90e061e5),
    (0x4000, 0x70d869a156d2a1b890bb3df62baf32f7),
    (0x8000, 0x31be135f97d08fd981231505542fcfa6),
    (0x10000, 0x9aa508b5b7a84e1c677de54f3e99bc9),
    (0x20000, 0x5d6af8dedb81196699c329225ee604),
    (0x40000, 0x2216e584f5fa1ea926041bedfe98),
    (0x80000, 0x48a170391f7dc42444e8fa2),
];

/// `sqrt(1.0001^tick) * 2^96`, rounded up as the contract does.
///
/// The contract's product of Q128.128 factors never exceeds 2^128 (it starts at 2^128 or just
/// below and every factor is below 1), so it runs here in 128-bit halves ([`mul_shift_128`])
/// rather than in full 256-bit multiplications.
pub fn get_sqrt_ratio_at_tick(tick: i32) -> Result<U256> {
    let abs = tick.unsigned_abs();
    if abs > MAX_TICK as u32 {
        return Err(MathError::TickOutOfRange);
    }
    // `None` stands for 2^128 (the contract's start when bit 0 is clear), which u128 cannot hold;
    // (2^128 * m) >> 128 is m.
    let mut ratio: Option<u128> = (abs & 1 != 0).then_some(0xfffcb933bd6fad37aa2d162d1a594001);
    for (bit, m) in MULTIPLIERS {
        if abs & bit != 0 {
            ratio = Some(match ratio {
                Some(r) => mul_shift_128(r, m),
                None => m,
            });
        }
    }
    let mut ratio = ratio.map_or(U256::from(1) << 128usize, U256::from);
    if tick > 0 {
        ratio = U256::MAX / ratio;
    }
    let round = if (ratio & U256::from(u32::MAX)).is_zero() {
        U256::ZERO
    } else {
        U256::from(1)
    };
    Ok((ratio >> 32usize) + round)
}

/// `floor(a * b / 2^128)`, exactly, in 64-bit limbs.
#[inline]
fn mul_shift_128(a: u128, b: u128) -> u128 {
    const MASK: u128 = u64::MAX as u128;
    let (a0, a1, b0, b1) = (a & MASK, a >> 64, b & MASK, b >> 64);
    let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
    // The middle column with the carry out of the low one: at most 3 * 2^64.
    let mid = (p00 >> 64) + (p01 & MASK) + (p10 & MASK);
    p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64)
}

/// The greatest tick whose sqrt ratio is at most `sqrt_price_x96`.
pub fn get_tick_at_sqrt_ratio(sqrt_price_x96: U256) -> Result<i32> {
    if sqrt_price_x96 < MIN_SQRT_RATIO || sqrt_price_x96 >= MAX_SQRT_RATIO {
        return Err(MathError::SqrtPriceOutOfRange);
    }
    let ratio = sqrt_price_x96 << 32usize;
    let msb = 255 - ratio.leading_zeros();
    let mut r = if msb >= 128 {
        ratio >> (msb - 127)
    } else {
        ratio << (127 - msb)
    };
    let mut log_2 = I256::try_from(msb as i64 - 128).expect("small") << 64usize;
    for shift in (50usize..=63).rev() {
        r = (r * r) >> 127usize;
        let f = r >> 128usize;
        log_2 |= I256::from_raw(f << shift);
        r >>= f.to::<usize>();
    }
    let log_sqrt10001 = log_2 * I256::from_raw(uint!(255738958999603826347141_U256));
    let tick_low = (log_sqrt10001
        - I256::from_raw(uint!(3402992956809132418596140100660247210_U256)))
    .asr(128)
    .as_i32();
    let tick_hi = (log_sqrt10001
        + I256::from_raw(uint!(291339464771989622907027621153398088495_U256)))
    .asr(128)
    .as_i32();
    Ok(if tick_low == tick_hi {
        tick_low
    } else if get_sqrt_ratio_at_tick(tick_hi)? <= sqrt_price_x96 {
        tick_hi
    } else {
        tick_low
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The contract's arithmetic as written: full 256-bit products.
    fn sqrt_ratio_in_u256(tick: i32) -> U256 {
        let abs = tick.unsigned_abs();
        let mut ratio = if abs & 1 != 0 {
            uint!(0xfffcb933bd6fad37aa2d162d1a594001_U256)
        } else {
            U256::from(1) << 128usize
        };
        for (bit, m) in MULTIPLIERS {
            if abs & bit != 0 {
                ratio = (ratio * U256::from(m)) >> 128usize;
            }
        }
        if tick > 0 {
            ratio = U256::MAX / ratio;
        }
        let round = U256::from(!(ratio & U256::from(u32::MAX)).is_zero());
        (ratio >> 32usize) + round
    }

    #[test]
    fn the_128_bit_product_is_the_contracts_256_bit_one() {
        // Every tick near zero and the bounds, and a stride over the whole range.
        let near = (-70_000..70_000)
            .chain(MIN_TICK..MIN_TICK + 5_000)
            .chain(MAX_TICK - 5_000..=MAX_TICK);
        for t in near.chain((MIN_TICK..=MAX_TICK).step_by(7)) {
            assert_eq!(
                get_sqrt_ratio_at_tick(t).unwrap(),
                sqrt_ratio_in_u256(t),
                "tick {t}"
            );
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..100_000 {
            let (a, b) = (rng.random::<u128>(), rng.random::<u128>());
            let want = (U256::from(a) * U256::from(b)) >> 128usize;
            assert_eq!(U256::from(mul_shift_128(a, b)), want, "{a} * {b}");
        }
    }

    #[test]
    fn bounds_match_the_contract_constants() {
        assert_eq!(get_sqrt_ratio_at_tick(MIN_TICK).unwrap(), MIN_SQRT_RATIO);
        assert_eq!(get_sqrt_ratio_at_tick(MAX_TICK).unwrap(), MAX_SQRT_RATIO);
        assert_eq!(get_sqrt_ratio_at_tick(0).unwrap(), U256::from(1) << 96usize);
        assert!(get_sqrt_ratio_at_tick(MAX_TICK + 1).is_err());
        assert_eq!(get_tick_at_sqrt_ratio(MIN_SQRT_RATIO).unwrap(), MIN_TICK);
        assert_eq!(
            get_tick_at_sqrt_ratio(MAX_SQRT_RATIO - U256::from(1)).unwrap(),
            MAX_TICK - 1
        );
    }

    #[test]
    fn tick_at_ratio_is_the_greatest_tick_below() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..20_000 {
            let t = rng.random_range(MIN_TICK..MAX_TICK);
            let s = get_sqrt_ratio_at_tick(t).unwrap();
            assert_eq!(get_tick_at_sqrt_ratio(s).unwrap(), t);
            let next = get_sqrt_ratio_at_tick(t + 1).unwrap();
            // Any price strictly between two tick ratios maps to the lower tick.
            if next - s > U256::from(1) {
                let mid = s + (next - s) / U256::from(2);
                assert_eq!(get_tick_at_sqrt_ratio(mid).unwrap(), t);
                assert_eq!(get_tick_at_sqrt_ratio(next - U256::from(1)).unwrap(), t);
            }
        }
    }
}
