//! Ticks and Q64.96 sqrt prices (Uniswap's TickMath), bit for bit.

use alloy_primitives::{I256, U256, uint};

use crate::{MathError, Result};

pub const MIN_TICK: i32 = -887_272;
pub const MAX_TICK: i32 = 887_272;
pub const MIN_SQRT_RATIO: U256 = uint!(4295128739_U256);
pub const MAX_SQRT_RATIO: U256 = uint!(1461446703485210103287273052203988822378723970342_U256);

const MULTIPLIERS: [(u32, U256); 19] = [
    (0x2, uint!(0xfff97272373d413259a46990580e213a_U256)),
    (0x4, uint!(0xfff2e50f5f656932ef12357cf3c7fdcc_U256)),
    (0x8, uint!(0xffe5caca7e10e4e61c3624eaa0941cd0_U256)),
    (0x10, uint!(0xffcb9843d60f6159c9db58835c926644_U256)),
    (0x20, uint!(0xff973b41fa98c081472e6896dfb254c0_U256)),
    (0x40, uint!(0xff2ea16466c96a3843ec78b326b52861_U256)),
    (0x80, uint!(0xfe5dee046a99a2a811c461f1969c3053_U256)),
    (0x100, uint!(0xfcbe86c7900a88aedcffc83b479aa3a4_U256)),
    (0x200, uint!(0xf987a7253ac413176f2b074cf7815e54_U256)),
    (0x400, uint!(0xf3392b0822b70005940c7a398e4b70f3_U256)),
    (0x800, uint!(0xe7159475a2c29b7443b29c7fa6e889d9_U256)),
    (0x1000, uint!(0xd097f3bdfd2022b8845ad8f792aa5825_U256)),
    (0x2000, uint!(0xa9f746462d870fdf8a65dc1f90e061e5_U256)),
    (0x4000, uint!(0x70d869a156d2a1b890bb3df62baf32f7_U256)),
    (0x8000, uint!(0x31be135f97d08fd981231505542fcfa6_U256)),
    (0x10000, uint!(0x9aa508b5b7a84e1c677de54f3e99bc9_U256)),
    (0x20000, uint!(0x5d6af8dedb81196699c329225ee604_U256)),
    (0x40000, uint!(0x2216e584f5fa1ea926041bedfe98_U256)),
    (0x80000, uint!(0x48a170391f7dc42444e8fa2_U256)),
];

/// `sqrt(1.0001^tick) * 2^96`, rounded up as the contract does.
pub fn get_sqrt_ratio_at_tick(tick: i32) -> Result<U256> {
    let abs = tick.unsigned_abs();
    if abs > MAX_TICK as u32 {
        return Err(MathError::TickOutOfRange);
    }
    let mut ratio = if abs & 1 != 0 {
        uint!(0xfffcb933bd6fad37aa2d162d1a594001_U256)
    } else {
        U256::from(1) << 128usize
    };
    for (bit, m) in MULTIPLIERS {
        if abs & bit != 0 {
            // Both factors are below 2^129, so the product fits 256 bits.
            ratio = (ratio * m) >> 128usize;
        }
    }
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
