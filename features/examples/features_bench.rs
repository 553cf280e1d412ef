//! Feature-pipeline benchmark driver (see `bench/features_vs_pandas.sh`).
//!
//! `generate DIR N_SWAPS` writes a seeded synthetic `swaps` table (the dataset schema's columns the
//! pipeline reads) and a `blocks` table for three pools of one pair, quickly and without anvil.
//! `run DIR OUT` times the Polars pipeline on it (depth excluded: it comes from the exact replay of
//! logs, which the generator does not write) and writes the features to OUT for comparison (`-`:
//! no output). `FEATURES_BENCH_PROFILE`, `FEATURES_BENCH_EXPLAIN` and `FEATURES_BENCH_STAGES`
//! add per-node times, the optimised plan and the time to read the swaps.

use std::time::Instant;

use alloy_primitives::Address;
use dexlab_data::types::{PoolInfo, Protocol, TokenInfo};
use dexlab_features::FeatureConfig;
use dexlab_features::pipeline::{Inputs, build_lazy};
use polars::prelude::*;
use rand::{Rng, SeedableRng};

/// The `dexlab` binary's allocator, so the benchmark measures what the command runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn pools() -> Vec<PoolInfo> {
    let t0 = TokenInfo {
        address: Address::repeat_byte(1),
        symbol: "WETH".into(),
        decimals: 18,
    };
    let t1 = TokenInfo {
        address: Address::repeat_byte(2),
        symbol: "USDC".into(),
        decimals: 6,
    };
    [
        ("uniswap-v3", 500u32, 3u8),
        ("uniswap-v3", 3000, 4),
        ("pancakeswap-v3", 500, 5),
    ]
    .into_iter()
    .map(|(dex, fee, b)| PoolInfo {
        address: Address::repeat_byte(b),
        protocol: Protocol::UniswapV3,
        dex: dex.into(),
        token0: t0.clone(),
        token1: t1.clone(),
        fee,
        tick_spacing: Some(10),
        stable: None,
    })
    .collect()
}

fn cfg() -> FeatureConfig {
    FeatureConfig {
        depth_bps: vec![],
        ..Default::default()
    }
}

fn generate(dir: &str, n: usize) -> PolarsResult<()> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let blocks = (n / 5).max(10) as i64;
    let pools = pools();
    let (mut bn, mut li, mut pool, mut px, mut a0, mut a1, mut liq) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut mid = 3000.0f64;
    let mut block = 0i64;
    let mut log_index = 0i64;
    for _ in 0..n {
        if rng.random_bool(0.2) {
            block = (block + 1).min(blocks - 1);
            log_index = 0;
            mid *= 1.0 + 0.0005 * (rng.random::<f64>() - 0.5);
        }
        let k = rng.random_range(0..pools.len());
        let amount =
            10f64.powf(rng.random_range(-3.0..2.0)) * if rng.random_bool(0.5) { 1.0 } else { -1.0 };
        bn.push(block);
        li.push(log_index);
        log_index += 1;
        pool.push(format!("{:#x}", pools[k].address));
        px.push(mid * (1.0 + 0.001 * (rng.random::<f64>() - 0.5)));
        a0.push(amount);
        a1.push(-amount * mid);
        liq.push(format!(
            "{}",
            10u128.pow(18) + rng.random_range(0..10u128.pow(17))
        ));
    }
    let mut swaps = df!(
        "block_number" => bn, "log_index" => li, "pool" => pool, "price_float" => px,
        "amount0_float" => a0, "amount1_float" => a1, "liquidity" => liq
    )?;
    let mut blocks_df = df!(
        "block_number" => (0..blocks).collect::<Vec<i64>>(),
        "timestamp" => (0..blocks).map(|b| 1_700_000_000 + 2 * b).collect::<Vec<i64>>(),
        "base_fee_per_gas" => (0..blocks).map(|b| 5_000_000.0 + (b % 100) as f64 * 10_000.0).collect::<Vec<f64>>()
    )?;
    std::fs::create_dir_all(dir)?;
    ParquetWriter::new(std::fs::File::create(format!("{dir}/swaps.parquet"))?)
        .finish(&mut swaps)?;
    ParquetWriter::new(std::fs::File::create(format!("{dir}/blocks.parquet"))?)
        .finish(&mut blocks_df)?;
    eprintln!("wrote {n} swaps over {blocks} blocks to {dir}");
    Ok(())
}

fn run(dir: &str, out: &str) -> PolarsResult<()> {
    let scan = |f: &str| {
        LazyFrame::scan_parquet(
            PlRefPath::from(format!("{dir}/{f}").as_str()),
            ScanArgsParquet::default(),
        )
    };
    let blocks = scan("blocks.parquet")?;
    let n_blocks = blocks
        .clone()
        .select([len()])
        .collect()?
        .column("len")?
        .get(0)?
        .try_extract::<i64>()?;
    let inputs = Inputs {
        swaps: scan("swaps.parquet")?,
        blocks,
        depth: df!("block_number" => Vec::<i64>::new(), "pool_label" => Vec::<String>::new())?
            .lazy(),
        pools: pools(),
        first_block: 0,
        last_block: n_blocks - 1,
    };
    if std::env::var_os("FEATURES_BENCH_STAGES").is_some() {
        stages(&inputs)?;
    }
    if std::env::var_os("FEATURES_BENCH_EXPLAIN").is_some() {
        println!("{}", build_lazy(&inputs, &cfg(), None)?.explain(true)?);
    }
    if std::env::var_os("FEATURES_BENCH_PROFILE").is_some() {
        // Per-node timings of one run, longest first (microseconds).
        let (_, timings) = build_lazy(&inputs, &cfg(), None)?.profile()?;
        let timings = timings
            .lazy()
            .with_column((col("end") - col("start")).alias("us"))
            .sort(
                ["us"],
                SortMultipleOptions::default().with_order_descending(true),
            )
            .collect()?;
        let (node, start, end) = (
            timings.column("node")?.str()?,
            timings.column("start")?.u64()?,
            timings.column("end")?.u64()?,
        );
        for i in 0..timings.height().min(40) {
            println!(
                "profile {:>9} us ({:>9}..{:>9}) {}",
                end.get(i).unwrap_or(0) - start.get(i).unwrap_or(0),
                start.get(i).unwrap_or(0),
                end.get(i).unwrap_or(0),
                node.get(i).unwrap_or("")
            );
        }
    }
    let t = Instant::now();
    let mut df = build_lazy(&inputs, &cfg(), None)?.collect()?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "polars: {} rows x {} columns in {secs:.3} s",
        df.height(),
        df.width()
    );
    // `-`: time the pipeline only. Snappy, as pandas writes by default, so that the two
    // processes' wall times compare the same work.
    if out != "-" {
        ParquetWriter::new(std::fs::File::create(out)?)
            .with_compression(ParquetCompression::Snappy)
            .finish(&mut df)?;
    }
    Ok(())
}

fn timed<T>(what: &str, f: impl FnOnce() -> PolarsResult<T>) -> PolarsResult<T> {
    let t = Instant::now();
    let r = f()?;
    println!("stage {what}: {:.3} s", t.elapsed().as_secs_f64());
    Ok(r)
}

/// The floor under the pipeline: reading the swaps, all columns and each alone.
fn stages(inputs: &Inputs) -> PolarsResult<()> {
    timed("scan swaps", || inputs.swaps.clone().collect())?;
    for c in [
        "block_number",
        "log_index",
        "pool",
        "price_float",
        "amount0_float",
        "amount1_float",
        "liquidity",
    ] {
        timed(&format!("scan {c}"), || {
            inputs.swaps.clone().select([col(c)]).collect()
        })?;
    }
    Ok(())
}

fn main() -> PolarsResult<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("generate") => generate(&args[2], args[3].parse().expect("N_SWAPS")),
        Some("run") => run(&args[2], &args[3]),
        _ => {
            eprintln!("usage: features_bench generate DIR N_SWAPS | run DIR OUT|-");
            std::process::exit(2)
        }
    }
}
