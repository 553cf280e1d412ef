//! V3 swap simulation per quote, side by side in one run with the `uniswap_v3_math` crate's
//! primitives (compute_swap_step, TickMath) driven by the same swap loop and tick lookup.
//! Cases: a swap that stays inside one range, and one that crosses about 20 initialized ticks.
//!
//! The `quote` group puts one exact-input quote of each family side by side: Uniswap V3, an
//! Aerodrome Slipstream pool (the same V3 math on a tick spacing of 100, its fee read from the
//! factory; staking changes who earns the fee, not the quote), and Aerodrome volatile and stable
//! pools (the stable curve's Newton solve of `_get_y`).

use std::collections::BTreeMap;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dexlab_amm::solidly::SolidlyPool;
use dexlab_amm::v3::{SwapResult, TickInfo, V3Pool};
use dexlab_amm::{I256, U256, tick_math};

/// A WETH/USDC-like 0.05 % pool: 40 positions around the price.
fn pool() -> V3Pool {
    let mut p = V3Pool::new(
        tick_math::get_sqrt_ratio_at_tick(-196_230).unwrap(),
        500,
        10,
    )
    .unwrap();
    for i in 0..40i32 {
        let w = 2 + i * 3;
        p.modify_position(
            -196_230 - w * 10,
            -196_230 + w * 10,
            2_000_000_000_000_000 + i as i128 * 50_000_000_000_000,
        )
        .unwrap();
    }
    p
}

/// The same loop as `V3Pool::swap`, on the peer crate's math.
fn peer_swap(p: &V3Pool, zero_for_one: bool, amount: I256) -> SwapResult {
    use uniswap_v3_math::{swap_math, tick_math as tm};
    let limit = if zero_for_one {
        tick_math::MIN_SQRT_RATIO + U256::from(1)
    } else {
        tick_math::MAX_SQRT_RATIO - U256::from(1)
    };
    let (mut rem, mut calc, mut sp, mut tick, mut liq) =
        (amount, I256::ZERO, p.sqrt_price_x96, p.tick, p.liquidity);
    let ticks: &BTreeMap<i32, TickInfo> = &p.ticks;
    let s = p.tick_spacing;
    while !rem.is_zero() && sp != limit {
        let start = sp;
        let c = tick.div_euclid(s);
        let (next, init) = if zero_for_one {
            let lo = ((c >> 8) << 8) * s;
            ticks
                .range(lo..=c * s)
                .next_back()
                .map_or((lo, false), |(&t, _)| (t, true))
        } else {
            let hi = ((((c + 1) >> 8) << 8) + 255) * s;
            ticks
                .range((c + 1) * s..=hi)
                .next()
                .map_or((hi, false), |(&t, _)| (t, true))
        };
        let next = next.clamp(tick_math::MIN_TICK, tick_math::MAX_TICK);
        let sn = tm::get_sqrt_ratio_at_tick(next).unwrap();
        let target = if (zero_for_one && sn < limit) || (!zero_for_one && sn > limit) {
            limit
        } else {
            sn
        };
        let (nsp, ain, aout, fee) =
            swap_math::compute_swap_step(sp, target, liq, rem, p.fee).unwrap();
        sp = nsp;
        rem -= I256::from_raw(ain + fee);
        calc -= I256::from_raw(aout);
        if sp == sn {
            if init {
                let net = ticks[&next].liquidity_net;
                let net = if zero_for_one { -net } else { net };
                liq = if net < 0 {
                    liq - net.unsigned_abs()
                } else {
                    liq + net as u128
                };
            }
            tick = if zero_for_one { next - 1 } else { next };
        } else if sp != start {
            tick = tm::get_tick_at_sqrt_ratio(sp).unwrap();
        }
    }
    let (a0, a1) = if zero_for_one {
        (amount - rem, calc)
    } else {
        (calc, amount - rem)
    };
    SwapResult {
        amount0: a0,
        amount1: a1,
        sqrt_price_x96: sp,
        tick,
        liquidity: liq,
        ticks_crossed: 0,
    }
}

fn bench(c: &mut Criterion) {
    let p = pool();
    let small = I256::try_from(1_000_000_000_000_000u128).unwrap(); // 0.001 WETH
    let large = I256::try_from(60_000_000_000_000_000_000u128).unwrap(); // 60 WETH
    let r_small = p.swap(true, small, None).unwrap();
    let r_large = p.swap(true, large, None).unwrap();
    assert_eq!(r_small.ticks_crossed, 0);
    assert!(r_large.ticks_crossed >= 15, "{r_large:?}");
    // Same answers from both, or the comparison means nothing.
    for (amt, r) in [(small, r_small), (large, r_large)] {
        let q = peer_swap(&p, true, amt);
        assert_eq!(
            (q.amount0, q.amount1, q.sqrt_price_x96, q.tick, q.liquidity),
            (r.amount0, r.amount1, r.sqrt_price_x96, r.tick, r.liquidity)
        );
    }
    eprintln!(
        "tick-crossing case crosses {} initialized ticks",
        r_large.ticks_crossed
    );
    let mut g = c.benchmark_group("v3_swap");
    g.bench_function("in_range/dexlab", |b| {
        b.iter(|| p.swap(true, black_box(small), None).unwrap())
    });
    g.bench_function("in_range/uniswap_v3_math", |b| {
        b.iter(|| peer_swap(&p, true, black_box(small)))
    });
    g.bench_function("crossing/dexlab", |b| {
        b.iter(|| p.swap(true, black_box(large), None).unwrap())
    });
    g.bench_function("crossing/uniswap_v3_math", |b| {
        b.iter(|| peer_swap(&p, true, black_box(large)))
    });
    g.finish();

    // One quote per family, a ~$10k trade on a pool of a few million dollars.
    let slipstream = {
        let mut p = V3Pool::new(
            tick_math::get_sqrt_ratio_at_tick(-196_200).unwrap(),
            500,
            100,
        )
        .unwrap();
        for i in 0..20i32 {
            let w = 1 + i * 2;
            p.modify_position(
                -196_200 - w * 100,
                -196_200 + w * 100,
                4_000_000_000_000_000 + i as i128 * 100_000_000_000_000,
            )
            .unwrap();
        }
        p
    };
    let e18 = U256::from(1_000_000_000_000_000_000u128);
    // WETH/USDC volatile at 3,000 USDC, 0.30 %; USDC (6) / DAI (18) stable, 0.05 %.
    let volatile = SolidlyPool::new(
        U256::from(1_000u64) * e18,
        U256::from(3_000_000_000_000u64),
        18,
        6,
        false,
        3000,
    );
    let stable = SolidlyPool::new(
        U256::from(2_000_000_000_000u64),
        U256::from(2_010_000u64) * e18,
        6,
        18,
        true,
        500,
    );
    let weth = I256::try_from(3_000_000_000_000_000_000u128).unwrap(); // 3 WETH
    let usdc = U256::from(10_000_000_000u64); // 10,000 USDC
    assert!(!stable.get_amount_out(usdc, true).unwrap().is_zero());
    let mut g = c.benchmark_group("quote");
    g.bench_function("uniswap_v3", |b| {
        b.iter(|| p.swap(true, black_box(weth), None).unwrap())
    });
    g.bench_function("slipstream", |b| {
        b.iter(|| slipstream.swap(true, black_box(weth), None).unwrap())
    });
    g.bench_function("aerodrome_volatile", |b| {
        b.iter(|| {
            volatile
                .get_amount_out(black_box(U256::from(3u64) * e18), true)
                .unwrap()
        })
    });
    g.bench_function("aerodrome_stable", |b| {
        b.iter(|| stable.get_amount_out(black_box(usdc), true).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
