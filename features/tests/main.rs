//! Feature pipeline on the real USDC/WETH sample: shape, point-in-time correctness, the leakage
//! canary (and that it catches a deliberately leaky feature), and reproducibility.

use std::path::{Path, PathBuf};

use dexlab_data::import::{ImportOptions, import};
use dexlab_data::manifest::ChainManifest;
use dexlab_features::pipeline::{build_lazy, pool_labels};
use dexlab_features::{FeatureConfig, FeatureError, build, leakage, load_inputs};
use polars::prelude::*;

fn sample_dataset() -> (tempfile::TempDir, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
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
    (dir, out)
}

#[test]
fn features_of_the_real_sample_are_point_in_time_and_complete() {
    let (dir, data) = sample_dataset();
    let cfg = FeatureConfig::default();
    let out = dir.path().join("features");
    let r = build(&data, &cfg, &out).unwrap();
    let df = ParquetReader::new(std::fs::File::open(out.join("features.parquet")).unwrap())
        .finish()
        .unwrap();
    assert_eq!(df.height(), r.rows);
    assert_eq!(r.rows as u64, 18_940_929 - 18_937_382 + 1);
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let spread = "spread_bps__uniswap_v3_usdc_weth_500__uniswap_v3_usdc_weth_3000";
    assert!(names.iter().any(|n| n == spread), "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n
                == "label_arb_profitable__uniswap_v3_usdc_weth_500__uniswap_v3_usdc_weth_3000")
    );
    assert!(
        names
            .iter()
            .filter(|n| n.contains("fwd"))
            .all(|n| n.starts_with("label_"))
    );
    // The spread between the two fee tiers stays inside the 0.30 % pool's fee band (+ a margin).
    let s = df.column(spread).unwrap().f64().unwrap();
    let max_abs = s.iter().flatten().map(f64::abs).fold(0.0, f64::max);
    assert!(max_abs > 0.0 && max_abs < 60.0, "{max_abs}");
    // The mid price at a block is the price after the block's last swap of that pool.
    let swaps = dexlab_data::dataset::read_table(&data, "swaps").unwrap();
    let b = &swaps[0];
    let p = Path::new("swaps");
    let pools = dexlab_data::dataset::string_column(p, b, "pool").unwrap();
    let blocks = dexlab_data::dataset::int_column(p, b, "block_number").unwrap();
    let prices = dexlab_data::dataset::f64_column(p, b, "price_float").unwrap();
    let mut last = std::collections::BTreeMap::new();
    for i in 0..b.num_rows() {
        if pools[i].as_deref() == Some("0x88e6a0c2ddd26feeb64f039a2c41296fcb3f5640") {
            last.insert(blocks[i].unwrap() as i64, prices[i].unwrap());
        }
    }
    let bn = df.column("block_number").unwrap().i64().unwrap();
    let mid = df
        .column("uniswap_v3_usdc_weth_500__mid_price")
        .unwrap()
        .f64()
        .unwrap();
    let mut checked = 0;
    for (k, want) in last.iter().step_by(50) {
        let row = bn.iter().position(|x| x == Some(*k)).unwrap();
        assert_eq!(mid.get(row), Some(*want));
        checked += 1;
    }
    assert!(checked > 10);
    let manifest: dexlab_features::FeatureManifest =
        dexlab_data::dataset::read_json(&out.join("manifest.json")).unwrap();
    assert_eq!(
        manifest.input_hash,
        dexlab_features::dataset_hash(&data).unwrap()
    );
    assert!(!manifest.leakage_check_blocks.is_empty());
    // Every label records how far it looks ahead; features do not.
    let lookahead = |name: &str| {
        manifest
            .columns
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .lookahead_blocks
    };
    assert_eq!(
        lookahead("label_arb_profitable__uniswap_v3_usdc_weth_500__uniswap_v3_usdc_weth_3000"),
        Some(cfg.latency_blocks)
    );
    assert_eq!(
        lookahead("label_fwd_ret_5__uniswap_v3_usdc_weth_500"),
        Some(5)
    );
    assert_eq!(lookahead(spread), None);
    assert!(
        manifest
            .columns
            .iter()
            .all(|c| (c.kind == "label") == c.lookahead_blocks.is_some()),
        "{:?}",
        manifest.columns
    );
}

#[test]
fn every_label_looks_exactly_as_far_ahead_as_it_declares() {
    let mut cfg = FeatureConfig {
        latency_blocks: 3,
        ..FeatureConfig::default()
    };
    let arb = "label_arb_profitable__uniswap_v3_usdc_weth_500__uniswap_v3_usdc_weth_3000";
    assert_eq!(dexlab_features::label_lookahead(arb, &cfg), Some(3));
    assert_eq!(
        dexlab_features::label_lookahead("label_fwd_ret_20__p", &cfg),
        Some(20)
    );
    assert_eq!(
        dexlab_features::label_lookahead("label_fwd_spread_chg_5__a__b", &cfg),
        Some(5)
    );
    assert_eq!(
        dexlab_features::label_lookahead("label_fwd_ret_7__p", &cfg),
        None
    );
    assert_eq!(dexlab_features::label_lookahead("p__ret_5", &cfg), None);

    // The canary holds every label to its declared look-ahead: with a latency of 3 blocks the
    // arbitrage label at t - 3 must not change when data after t does, and does not.
    let (_dir, data) = sample_dataset();
    let inputs = load_inputs(&data, &cfg).unwrap();
    let cuts = leakage::cut_points(&inputs).unwrap();
    leakage::check(&inputs, &cfg, &cuts, None).unwrap();
    // A label named for a 1-block horizon that reads 3 blocks ahead is caught.
    let label = pool_labels(&inputs.pools).values().min().unwrap().clone();
    let px = format!("{label}__mid_price");
    let peeks = move |lf: LazyFrame| {
        lf.with_column(
            (col(px.as_str()).shift(lit(-3)) - col(px.as_str())).alias("label_fwd_ret_1__peeks"),
        )
    };
    let err = leakage::check(&inputs, &cfg, &cuts, Some(&peeks)).unwrap_err();
    assert!(
        matches!(&err, FeatureError::Leakage(m)
            if m.contains("label_fwd_ret_1__peeks (declared 1)") && !m.contains(arb)),
        "{err}"
    );
    // Named for a 3-block horizon (one the config has), it passes.
    cfg.label_horizons.push(3);
    let px = format!("{label}__mid_price");
    let honest = move |lf: LazyFrame| {
        lf.with_column(
            (col(px.as_str()).shift(lit(-3)) - col(px.as_str())).alias("label_fwd_ret_3__peeks"),
        )
    };
    leakage::check(&inputs, &cfg, &cuts, Some(&honest)).unwrap();
}

#[test]
fn the_leakage_canary_catches_a_leaky_feature() {
    let (_dir, data) = sample_dataset();
    let cfg = FeatureConfig::default();
    let inputs = load_inputs(&data, &cfg).unwrap();
    let cuts = leakage::cut_points(&inputs).unwrap();
    assert!(cuts.len() >= 3, "{cuts:?}");
    leakage::check(&inputs, &cfg, &cuts, None).unwrap();
    let label = pool_labels(&inputs.pools).values().min().unwrap().clone();
    let px = format!("{label}__mid_price");
    // A "feature" that peeks one block ahead.
    let leaky = move |lf: LazyFrame| {
        lf.with_column(col(px.as_str()).shift(lit(-1)).alias("leaky_next_price"))
    };
    let err = leakage::check(&inputs, &cfg, &cuts, Some(&leaky)).unwrap_err();
    assert!(
        matches!(&err, FeatureError::Leakage(m) if m.contains("leaky_next_price")),
        "{err}"
    );
    // A centred rolling mean leaks too.
    let px2 = format!("{label}__mid_price");
    let centred = move |lf: LazyFrame| {
        lf.with_column(
            col(px2.as_str())
                .rolling_mean(RollingOptionsFixedWindow {
                    window_size: 5,
                    min_periods: 1,
                    center: true,
                    ..Default::default()
                })
                .alias("centred_mean"),
        )
    };
    assert!(leakage::check(&inputs, &cfg, &cuts, Some(&centred)).is_err());
}

#[test]
fn same_data_and_config_give_identical_features() {
    let (_dir, data) = sample_dataset();
    let cfg = FeatureConfig::default();
    let a = build_lazy(&load_inputs(&data, &cfg).unwrap(), &cfg, None)
        .unwrap()
        .collect()
        .unwrap();
    let b = build_lazy(&load_inputs(&data, &cfg).unwrap(), &cfg, None)
        .unwrap()
        .collect()
        .unwrap();
    assert!(a.equals_missing(&b));
}

#[test]
fn bad_config_values_are_reported_with_the_file() {
    let e = FeatureConfig::from_toml("vol_windows = [1]\n", "f.toml").unwrap_err();
    assert!(
        e.to_string().contains("f.toml") && e.to_string().contains("vol_windows"),
        "{e}"
    );
    let e = FeatureConfig::from_toml("nonsense = 3\n", "g.toml").unwrap_err();
    assert!(
        e.to_string().contains("g.toml") && e.to_string().contains("nonsense"),
        "{e}"
    );
}

/// A label horizon (or the arbitrage label's latency) at or beyond the data's span would give a
/// column of nulls only: refused, with the horizon and the number of blocks, and nothing written.
#[test]
fn label_horizons_beyond_the_data_are_refused() {
    let (dir, data) = sample_dataset();
    let inputs = load_inputs(&data, &FeatureConfig::default()).unwrap();
    let blocks = inputs.last_block - inputs.first_block + 1;
    let out = dir.path().join("features");
    let too_far = u32::try_from(blocks).unwrap();
    let cfg = FeatureConfig {
        label_horizons: vec![1, too_far],
        ..FeatureConfig::default()
    };
    let e = build(&data, &cfg, &out).unwrap_err().to_string();
    assert!(e.contains(&format!("label_horizons = {too_far}")), "{e}");
    assert!(e.contains(&format!("{blocks} blocks")), "{e}");
    assert!(
        e.contains(&format!("{}..={}", inputs.first_block, inputs.last_block)),
        "{e}"
    );
    assert!(!out.exists(), "{} was written", out.display());

    let cfg = FeatureConfig {
        latency_blocks: too_far,
        ..FeatureConfig::default()
    };
    let e = build(&data, &cfg, &out).unwrap_err().to_string();
    assert!(e.contains(&format!("latency_blocks = {too_far}")), "{e}");

    // The longest horizon that leaves one labelled row is accepted.
    let cfg = FeatureConfig {
        label_horizons: vec![too_far - 1],
        ..FeatureConfig::default()
    };
    build(&data, &cfg, &out).unwrap();
}

/// The first swaps chunk of the imported sample.
fn swaps_file(data: &Path) -> PathBuf {
    let chunks = dexlab_data::dataset::list_chunks(data, "swaps").unwrap();
    chunks[0].2.clone()
}

/// A price of zero in the swaps (what a zero `sqrtPriceX96` used to give) would put -inf into the
/// log returns and their labels: the build refuses, naming the column and the block.
#[test]
fn a_non_finite_feature_is_refused_naming_column_and_block() {
    let (dir, data) = sample_dataset();
    let p = swaps_file(&data);
    let mut df = ParquetReader::new(std::fs::File::open(&p).unwrap())
        .finish()
        .unwrap();
    let prices: Vec<Option<f64>> = df
        .column("price_float")
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, v)| if i == 10 { Some(0.0) } else { v })
        .collect();
    let block = df
        .column("block_number")
        .unwrap()
        .cast(&DataType::Int64)
        .unwrap()
        .i64()
        .unwrap()
        .get(10)
        .unwrap();
    df.with_column(Column::new("price_float".into(), prices))
        .unwrap();
    ParquetWriter::new(std::fs::File::create(&p).unwrap())
        .finish(&mut df)
        .unwrap();
    let e = build(
        &data,
        &FeatureConfig::default(),
        &dir.path().join("features"),
    )
    .expect_err("a zero price")
    .to_string();
    assert!(e.contains("inf") && e.contains("column `"), "{e}");
    assert!(e.contains(&format!("at block {block}")), "{e}");
    assert!(!dir.path().join("features/features.parquet").exists());
}

/// A damaged swaps file is named by the error, whether its footer or one of its pages is broken
/// (Polars' own error says neither which file nor which dataset).
#[test]
fn a_damaged_swaps_file_is_named() {
    let (dir, data) = sample_dataset();
    let p = swaps_file(&data);
    let good = std::fs::read(&p).unwrap();
    let page = {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let r = SerializedFileReader::new(std::fs::File::open(&p).unwrap()).unwrap();
        let rg = r.metadata().row_group(0);
        let i = (0..rg.num_columns())
            .find(|&i| rg.column(i).column_path().string() == "price_float")
            .unwrap();
        rg.column(i).data_page_offset() as usize
    };
    // The footer: the file no longer ends with PAR1.
    std::fs::write(&p, &good[..good.len() - 10]).unwrap();
    let e = build(&data, &FeatureConfig::default(), &dir.path().join("f1"))
        .expect_err("truncated swaps")
        .to_string();
    assert!(e.contains(&p.display().to_string()), "{e}");
    // A page: the header of price_float's first data page overwritten, the footer intact.
    let mut bad = good.clone();
    bad[page..page + 16].fill(0xff);
    std::fs::write(&p, &bad).unwrap();
    let e = build(&data, &FeatureConfig::default(), &dir.path().join("f2"))
        .expect_err("a damaged page")
        .to_string();
    assert!(e.contains(&p.display().to_string()), "{e}");
}
