//! Feature-pipeline benchmark driver (see `bench/features_vs_pandas.sh`).
//!
//! `generate DIR N_SWAPS` writes a seeded synthetic `swaps` table (the dataset schema's columns the
//! pipeline reads) and a `blocks` table for three pools of one pair, quickly and without anvil.
//! `run DIR OUT` times the Polars pipeline on it (depth excluded: it comes from the exact replay of
//! logs, which the generator does not write) and writes the features to OUT for comparison.

use std::time::Instant;

use alloy_primitives::Address;
use dexlab_data::types::{PoolInfo, Protocol, TokenInfo};
use dexlab_features::FeatureConfig;
use dexlab_features::pipeline::{Inputs, build_lazy};
use polars::prelude::*;
use rand::{Rng, SeedableRng};

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
    ParquetWriter::new(std::fs::File::create(out)?).finish(&mut df)?;
    Ok(())
}

fn timed<T>(what: &str, f: impl FnOnce() -> PolarsResult<T>) -> PolarsResult<T> {
    let t = Instant::now();
    let r = f()?;
    println!("stage {what}: {:.3} s", t.elapsed().as_secs_f64());
    Ok(r)
}

fn sorted_flag(c: Column) -> PolarsResult<Column> {
    let mut s = c.take_materialized_series();
    s.set_sorted_flag(polars::series::IsSorted::Ascending);
    Ok(s.into_column())
}

fn stages(inputs: &Inputs) -> PolarsResult<()> {
    let swaps = timed("scan", || {
        inputs
            .swaps
            .clone()
            .with_columns([
                col("block_number").cast(DataType::Int64),
                col("log_index").cast(DataType::Int64),
            ])
            .collect()
    })?;
    println!(
        "block_number sorted flag after scan: {:?}",
        swaps
            .column("block_number")?
            .as_materialized_series()
            .is_sorted_flag()
    );
    let addrs: Vec<String> = pools()
        .iter()
        .map(|p| format!("{:#x}", p.address))
        .collect();
    let aggs_now = || {
        vec![
            col("price_float")
                .get(col("log_index").arg_max(), false)
                .alias("px"),
            col("liquidity_f")
                .get(col("log_index").arg_max(), false)
                .alias("liq"),
            len().cast(DataType::Float64).alias("n"),
            col("amount0_float").abs().sum().alias("vol0"),
            col("amount1_float").abs().sum().alias("vol1"),
            (lit(0.0) - col("amount0_float")).sum().alias("net0"),
        ]
    };
    let aggs_str = |last: bool| {
        let pick = |c: &str| {
            if last {
                col(c).last()
            } else {
                col(c).get(col("log_index").arg_max(), false)
            }
        };
        vec![
            pick("price_float").alias("px"),
            pick("liquidity").alias("liq_s"),
            len().cast(DataType::Float64).alias("n"),
            col("amount0_float").abs().sum().alias("vol0"),
            col("amount1_float").abs().sum().alias("vol1"),
            (lit(0.0) - col("amount0_float")).sum().alias("net0"),
        ]
    };
    let lf = || swaps.clone().lazy();
    timed("3x filter only", || {
        for a in &addrs {
            lf().filter(col("pool").eq(lit(a.clone()))).collect()?;
        }
        Ok(())
    })?;
    timed("cast liquidity all rows", || {
        lf().select([col("liquidity").cast(DataType::Float64)])
            .collect()
    })?;
    timed("3x filter+cast+group_by (now)", || {
        for a in &addrs {
            lf().filter(col("pool").eq(lit(a.clone())))
                .with_column(
                    col("liquidity")
                        .cast(DataType::Float64)
                        .alias("liquidity_f"),
                )
                .group_by([col("block_number")])
                .agg(aggs_now())
                .collect()?;
        }
        Ok(())
    })?;
    let mut aggs = vec![];
    timed("3x filter+group_by, cast after", || {
        for a in &addrs {
            aggs.push(
                lf().filter(col("pool").eq(lit(a.clone())))
                    .group_by([col("block_number")])
                    .agg(aggs_str(false))
                    .with_column(col("liq_s").cast(DataType::Float64).alias("liq"))
                    .collect()?,
            );
        }
        Ok(())
    })?;
    let sorted = || lf().with_column(col("block_number").map(sorted_flag, |_, f| Ok(f.clone())));
    timed("3x filter+group_by sorted flag, cast after", || {
        for a in &addrs {
            sorted()
                .filter(col("pool").eq(lit(a.clone())))
                .group_by([col("block_number")])
                .agg(aggs_str(false))
                .with_column(col("liq_s").cast(DataType::Float64).alias("liq"))
                .collect()?;
        }
        Ok(())
    })?;
    timed("cast all, 3x filter+group_by sorted flag, last()", || {
        let pre = sorted()
            .with_column(col("liquidity").cast(DataType::Float64))
            .collect()?;
        for a in &addrs {
            pre.clone()
                .lazy()
                .filter(col("pool").eq(lit(a.clone())))
                .group_by([col("block_number")])
                .agg(aggs_str(true))
                .collect()?;
        }
        Ok(())
    })?;
    timed(
        "3x filter (no liquidity)+group_by sorted flag, last()",
        || {
            for a in &addrs {
                sorted()
                    .drop(by_name(["liquidity"], true, false))
                    .filter(col("pool").eq(lit(a.clone())))
                    .group_by([col("block_number")])
                    .agg(
                        aggs_str(true)
                            .into_iter()
                            .filter(|e| !format!("{e:?}").contains("liq"))
                            .collect::<Vec<_>>(),
                    )
                    .collect()?;
            }
            Ok(())
        },
    )?;
    timed("3x filter+group_by (hash), last(), cast after", || {
        for a in &addrs {
            lf().filter(col("pool").eq(lit(a.clone())))
                .group_by([col("block_number")])
                .agg(aggs_str(true))
                .with_column(col("liq_s").cast(DataType::Float64).alias("liq"))
                .collect()?;
        }
        Ok(())
    })?;
    timed("3x filter+group_by sorted flag, last()", || {
        for a in &addrs {
            sorted()
                .filter(col("pool").eq(lit(a.clone())))
                .group_by([col("block_number")])
                .agg(aggs_str(true))
                .collect()?;
        }
        Ok(())
    })?;
    timed("group_by(pool, block) all", || {
        lf().group_by([col("pool"), col("block_number")])
            .agg(aggs_str(false))
            .collect()
    })?;
    timed("pool categorical + group_by(pool_cat, block) all", || {
        lf().with_column(col("pool").cast(DataType::from_categories(Categories::global())))
            .group_by([col("pool"), col("block_number")])
            .agg(aggs_str(false))
            .collect()
    })?;
    timed("pool categorical cast only", || {
        lf().select([col("pool").cast(DataType::from_categories(Categories::global()))])
            .collect()
    })?;
    let grid = df!("block_number" => (0..1_000_000i64).collect::<Vec<i64>>())?;
    timed("3x join grid (hash)", || {
        for a in &aggs {
            let mut args = JoinArgs::new(JoinType::Left);
            args.maintain_order = MaintainOrderJoin::Left;
            grid.clone()
                .lazy()
                .join(
                    a.clone().lazy(),
                    [col("block_number")],
                    [col("block_number")],
                    args,
                )
                .collect()?;
        }
        Ok(())
    })?;
    Ok(())
}

fn main() -> PolarsResult<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("generate") => generate(&args[2], args[3].parse().expect("N_SWAPS")),
        Some("run") => run(&args[2], &args[3]),
        _ => {
            eprintln!("usage: features_bench generate DIR N_SWAPS | run DIR OUT");
            std::process::exit(2)
        }
    }
}
