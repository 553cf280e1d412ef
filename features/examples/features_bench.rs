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
    let mut df = if std::env::var_os("TMP_OLD").is_some() {
        let old_inp = old_pipeline::Inputs {
            swaps: inputs.swaps.clone(),
            blocks: inputs.blocks.clone(),
            depth: inputs.depth.clone(),
            pools: inputs.pools.clone(),
            first_block: inputs.first_block,
            last_block: inputs.last_block,
        };
        old_pipeline::build_lazy(&old_inp, &cfg(), None)?.collect()?
    } else {
        build_lazy(&inputs, &cfg(), None)?.collect()?
    };
    let secs = t.elapsed().as_secs_f64();
    println!(
        "polars: {} rows x {} columns in {secs:.3} s",
        df.height(),
        df.width()
    );
    if out != "-" {
        ParquetWriter::new(std::fs::File::create(out)?).finish(&mut df)?;
    }
    Ok(())
}

fn timed<T>(what: &str, f: impl FnOnce() -> PolarsResult<T>) -> PolarsResult<T> {
    let t = Instant::now();
    let r = f()?;
    println!("stage {what}: {:.3} s", t.elapsed().as_secs_f64());
    Ok(r)
}

fn stages(inputs: &Inputs) -> PolarsResult<()> {
    let swaps = timed("scan", || inputs.swaps.clone().collect())?;
    for c in ["block_number", "log_index", "pool", "price_float", "amount0_float", "liquidity"] {
        timed(&format!("scan {c}"), || inputs.swaps.clone().select([col(c)]).collect())?;
    }
    println!("chunks: {:?}", swaps.columns().iter().map(|c| c.as_materialized_series().n_chunks()).collect::<Vec<_>>());
    timed("pool id (when chain)", || {
        let mut id = lit(NULL).cast(DataType::UInt32);
        for (i, p) in pools().iter().enumerate() {
            id = when(col("pool").eq(lit(format!("{:#x}", p.address))))
                .then(lit(i as u32))
                .otherwise(id);
        }
        swaps.clone().lazy().select([id]).collect()
    })?;
    let out = build_lazy(inputs, &cfg(), None)?.collect()?;
    let l = "uniswap_v3_weth_usdc_500";
    let f = out
        .lazy()
        .select([
            when(col(format!("{l}__swaps_1")).gt(lit(0.0)))
                .then(col(format!("{l}__mid_price")))
                .otherwise(lit(NULL))
                .alias("px"),
            col(format!("{l}__swaps_1")).alias("n"),
            col(format!("{l}__volume1_1")).alias("v"),
            col(format!("{l}__ret_1")).alias("r"),
        ])
        .collect()?;
    let w = |n: usize| RollingOptionsFixedWindow {
        window_size: n,
        min_periods: n,
        ..Default::default()
    };
    for _ in 0..2 {
        let lf = || f.clone().lazy();
        timed("ffill px", || {
            lf().select([col("px").fill_null_with_strategy(FillNullStrategy::Forward(None))])
                .collect()
        })?;
        timed("8 rolling sums", || {
            let mut e = vec![];
            for n in [10, 50] {
                for c in ["n", "v", "n", "v"] {
                    e.push(col(c).rolling_sum(w(n)).alias(format!("s{n}_{}", e.len())));
                }
            }
            lf().select(e).collect()
        })?;
        timed("rolling_std 20, 100 (leading nulls)", || {
            lf().select([
                col("r").rolling_std(w(20)).alias("a"),
                col("r").rolling_std(w(100)).alias("b"),
            ])
            .collect()
        })?;
        timed("rolling_std 20, 100 (no nulls)", || {
            lf().select([
                col("r").fill_null(lit(0.0)).rolling_std(w(20)).alias("a"),
                col("r").fill_null(lit(0.0)).rolling_std(w(100)).alias("b"),
            ])
            .collect()
        })?;
        timed("log", || {
            lf().select([col("v").log(lit(std::f64::consts::E))])
                .collect()
        })?;
    }
    Ok(())
}

#[path = "/tmp/fb/old_pipeline.rs"]
#[allow(dead_code)]
mod old_pipeline;

fn tmp_compare() -> PolarsResult<()> {
    use dexlab_data::import::{ImportOptions, import};
    use dexlab_data::manifest::ChainManifest;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let s = root.join("../shared/data/univ3-usdc-weth-2024-01-05");
    let m =
        ChainManifest::load(&root.join("examples/univ3-usdc-weth-mainnet.manifest.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data");
    import(&ImportOptions {
        input: s.join("logs.jsonl"),
        out: out.clone(),
        timestamps: Some(s.join("block_timestamps.csv")),
        pools: m.pools,
        chain_id: 1,
        chunk_blocks: 10_000,
    })
    .unwrap();
    for cfg in [FeatureConfig::default(), cfg()] {
        let inputs = dexlab_features::load_inputs(&out, &cfg).unwrap();
        let cuts = dexlab_features::leakage::cut_points(&inputs).unwrap();
        let mut variants = vec![inputs.clone()];
        for &t in &cuts {
            variants.push(dexlab_features::leakage::perturbed(&inputs, t, &cfg));
        }
        // Out of chain order, with null amounts and prices.
        let li = || col("log_index").cast(DataType::Int64);
        variants.push(Inputs {
            swaps: inputs
                .swaps
                .clone()
                .sort(["amount1_float"], SortMultipleOptions::default())
                .with_columns([
                    when((li() % lit(7i64)).eq(lit(0i64)))
                        .then(lit(NULL).cast(DataType::Float64))
                        .otherwise(col("amount0_float"))
                        .alias("amount0_float"),
                    when((li() % lit(11i64)).eq(lit(0i64)))
                        .then(lit(NULL).cast(DataType::Float64))
                        .otherwise(col("price_float"))
                        .alias("price_float"),
                    when((li() % lit(5i64)).eq(lit(0i64)))
                        .then(lit(NULL).cast(DataType::Float64))
                        .otherwise(col("amount1_float"))
                        .alias("amount1_float"),
                ]),
            ..inputs.clone()
        });
        for inp in variants {
            let new = build_lazy(&inp, &cfg, None)?.collect()?;
            let old_inp = old_pipeline::Inputs {
                swaps: inp.swaps.clone(),
                blocks: inp.blocks.clone(),
                depth: inp.depth.clone(),
                pools: inp.pools.clone(),
                first_block: inp.first_block,
                last_block: inp.last_block,
            };
            let old = old_pipeline::build_lazy(&old_inp, &cfg, None)?.collect()?;
            assert_eq!(old.get_column_names(), new.get_column_names());
            assert_eq!(old.schema(), new.schema());
            let mut same = 0;
            for c in old.columns() {
                let n = new.column(c.name().as_str())?;
                if c.as_materialized_series()
                    .equals_missing(n.as_materialized_series())
                {
                    same += 1;
                } else {
                    println!("DIFFERS {}", c.name());
                }
            }
            println!(
                "{} rows: {same} of {} columns identical",
                old.height(),
                old.width()
            );
        }
    }
    Ok(())
}

fn main() -> PolarsResult<()> {
    if std::env::var_os("TMP_COMPARE").is_some() {
        return tmp_compare();
    }
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
