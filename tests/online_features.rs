//! Online features (what a model-driven strategy computes block by block, in backtests and live)
//! equal the Polars pipeline's columns of the same name on the real sample.

use std::path::{Path, PathBuf};

use dexlab_evolve::tape::{Tape, apply};
use dexlab_features::FeatureConfig;
use dexlab_models::FeatureTable;
use dexlab_strategy::OnlineFeatures;

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/univ3-usdc-weth-2024-01-05")
}

pub fn sample_tape(dir: &Path) -> Tape {
    let s = sample();
    Tape::import_jsonl(
        &s.join("logs.jsonl"),
        &s.join("block_timestamps.csv"),
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/univ3-usdc-weth-mainnet.manifest.json"),
        1,
        &dir.join("data"),
    )
    .unwrap()
}

#[test]
fn online_features_equal_the_dataset_columns() {
    let dir = tempfile::tempdir().unwrap();
    let tape = sample_tape(dir.path());
    let out = dir.path().join("features");
    dexlab_features::build(&dir.path().join("data"), &FeatureConfig::default(), &out).unwrap();
    let table = FeatureTable::read(&out.join("features.parquet")).unwrap();
    let online_kinds = [
        "__mid_price",
        "__ret_",
        "__vol_",
        "spread_bps__",
        "base_fee_wei",
    ];
    let columns: Vec<String> = table
        .default_features()
        .into_iter()
        .filter(|c| online_kinds.iter().any(|k| c.contains(k)))
        .collect();
    // mid price, 3 returns and 2 volatilities per pool, one spread, the base fee.
    assert_eq!(columns.len(), 2 * 6 + 1 + 1, "{columns:?}");
    let mut online = OnlineFeatures::new(&tape.pools, &columns, 1).unwrap();
    let blocks = table.column("block_number").unwrap();
    let row_of = |b: u64| blocks.iter().position(|&x| x == b as f64);
    let cols: Vec<&[f64]> = columns.iter().map(|c| table.column(c).unwrap()).collect();

    let mut market = tape.market();
    let mut compared = vec![0usize; columns.len()];
    let mut worst = (0.0f64, String::new());
    for (bi, block) in tape.blocks.iter().enumerate() {
        market.block = *block;
        for e in tape.events_of(bi) {
            apply(&mut market, e);
        }
        online.on_block(&market);
        let Some(r) = row_of(block.number) else {
            continue;
        };
        let row = online.last_row().unwrap();
        for (c, name) in columns.iter().enumerate() {
            let want = cols[c][r];
            if !want.is_finite() {
                continue;
            }
            let got = row[c];
            assert!(
                got.is_finite(),
                "block {}: `{name}` is {want} in the dataset, {got} online",
                block.number
            );
            // Prices agree to a few ulps (two f64 conversions of the same sqrt price); returns
            // and volatilities inherit that, and Polars' rolling std is a running computation.
            let err = (got - want).abs() / want.abs().max(1e-6);
            if err > worst.0 {
                worst = (
                    err,
                    format!(
                        "block {} `{name}`: dataset {want}, online {got}",
                        block.number
                    ),
                );
            }
            compared[c] += 1;
        }
    }
    // Every column but the base fee (the sample has none) is compared on most blocks.
    for (name, n) in columns.iter().zip(&compared) {
        if name != "base_fee_wei" {
            assert!(*n > 1_000, "`{name}`: only {n} values compared");
        }
    }
    assert!(
        worst.0 < 1e-6,
        "largest relative difference {:.3e} at {}",
        worst.0,
        worst.1
    );
}

#[test]
fn a_flow_feature_cannot_be_served_online() {
    let dir = tempfile::tempdir().unwrap();
    let tape = sample_tape(dir.path());
    let e = OnlineFeatures::new(&tape.pools, &["uniswap_v3_usdc_weth_500__ofi_10"], 1).unwrap_err();
    assert!(
        e.to_string().contains("`uniswap_v3_usdc_weth_500__ofi_10`"),
        "{e}"
    );
    assert!(
        e.to_string().contains("uniswap_v3_usdc_weth_3000"),
        "names the pools: {e}"
    );
}
