//! `dexlab data import` of the real USDC/WETH sample: every decoded swap equals demeter-fetch's
//! independent decoding in `reference_swaps.csv`.

use std::path::{Path, PathBuf};

use dexlab_data::dataset;

use crate::support::dexlab;

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/univ3-usdc-weth-2024-01-05")
}

fn import(input: &Path, out: &Path) -> serde_json::Value {
    let s = sample();
    let o = dexlab()
        .args(["data", "import", "--json"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .arg("--timestamps")
        .arg(s.join("block_timestamps.csv"))
        .arg("--manifest")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples/univ3-usdc-weth-mainnet.manifest.json"),
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

type Row = (
    String,
    u64,
    u64,
    String,
    String,
    String,
    String,
    String,
    i32,
);

fn swap_rows(root: &Path) -> Vec<Row> {
    let mut rows = Vec::new();
    for (_, _, p) in dataset::list_chunks(root, dataset::SWAPS).unwrap() {
        for b in dataset::read_parquet(&p).unwrap() {
            let s = |c| dataset::string_column(&p, &b, c).unwrap();
            let (pool, tx, a0, a1, sp, liq) = (
                s("pool"),
                s("transaction_hash"),
                s("amount0"),
                s("amount1"),
                s("sqrt_price_x96"),
                s("liquidity"),
            );
            let bn = dataset::int_column(&p, &b, "block_number").unwrap();
            let li = dataset::int_column(&p, &b, "log_index").unwrap();
            let tick = dataset::i32_column(&p, &b, "tick").unwrap();
            let ts = dataset::int_column(&p, &b, "block_timestamp").unwrap();
            for i in 0..b.num_rows() {
                assert!(ts[i].is_some(), "every swap has its block timestamp");
                rows.push((
                    pool[i].clone().unwrap(),
                    bn[i].unwrap(),
                    li[i].unwrap(),
                    tx[i].clone().unwrap(),
                    a0[i].clone().unwrap(),
                    a1[i].clone().unwrap(),
                    sp[i].clone().unwrap(),
                    liq[i].clone().unwrap(),
                    tick[i].unwrap(),
                ));
            }
        }
    }
    rows
}

#[test]
fn real_sample_swaps_equal_the_reference_decoding() {
    let out = tempfile::tempdir().unwrap();
    let r = import(&sample().join("logs.jsonl"), out.path());
    assert_eq!(r["logs"], 3121);
    assert_eq!(r["malformed"].as_array().unwrap().len(), 0);
    let ours = swap_rows(out.path());
    let mut reference = Vec::new();
    let mut rdr = csv::Reader::from_path(sample().join("reference_swaps.csv")).unwrap();
    for rec in rdr.records() {
        let rec = rec.unwrap();
        reference.push((
            rec[0].to_lowercase(),
            rec[1].parse().unwrap(),
            rec[2].parse().unwrap(),
            rec[3].to_lowercase(),
            rec[4].to_string(),
            rec[5].to_string(),
            rec[6].to_string(),
            rec[7].to_string(),
            rec[8].parse().unwrap(),
        ));
    }
    assert_eq!(reference.len(), 3005);
    // The reference lists pool by pool; the dataset is in chain order.
    let key = |r: &Row| (r.1, r.2);
    reference.sort_by_key(key);
    assert!(
        ours.windows(2).all(|w| key(&w[0]) < key(&w[1])),
        "swaps are in chain order"
    );
    assert_eq!(ours.len(), reference.len());
    for (o, r) in ours.iter().zip(&reference) {
        assert_eq!(o, r);
    }
}

#[test]
fn cryo_logs_parquet_imports_to_the_same_dataset() {
    // dexlab's logs table is cryo's layout: re-importing it must give the same swaps.
    let first = tempfile::tempdir().unwrap();
    import(&sample().join("logs.jsonl"), first.path());
    let second = tempfile::tempdir().unwrap();
    let r = import(&first.path().join("logs"), second.path());
    assert_eq!(r["logs"], 3121);
    assert_eq!(swap_rows(first.path()), swap_rows(second.path()));
}

#[test]
fn inspect_reports_the_sample() {
    let out = tempfile::tempdir().unwrap();
    import(&sample().join("logs.jsonl"), out.path());
    let o = dexlab()
        .args(["data", "inspect", "--json"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(o.status.success());
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["logs"], 3121);
    assert_eq!(r["first_block"], 18937382);
    // Logs alone carry no receipts: no transactions table, and inspect says why.
    assert!(r["transactions"].is_null(), "{}", r["transactions"]);
    assert_eq!(
        dexlab_data::dataset::read_all_transactions(out.path()).unwrap(),
        None
    );
    let text = dexlab()
        .args(["data", "inspect"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout)
            .contains("transactions: none (imported logs carry no fees)")
    );
    assert_eq!(r["events"]["v3_swap"], 3005);
    let pools = r["pools"].as_array().unwrap();
    assert_eq!(pools.len(), 2);
    for p in pools {
        // USDC per WETH from the sqrt prices: the inverse of token1-per-token0.
        let lo = 1.0 / p["price_max"].as_f64().unwrap();
        let hi = 1.0 / p["price_min"].as_f64().unwrap();
        assert!(lo > 2000.0 && hi < 2500.0 && lo < hi, "{lo}..{hi}");
    }
}

#[test]
fn verify_reproduces_every_real_swap_whose_state_is_known() {
    let out = tempfile::tempdir().unwrap();
    import(&sample().join("logs.jsonl"), out.path());
    let o = dexlab()
        .args(["data", "verify", "--json"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["swaps"], 3005);
    let exact = r["exact"].as_u64().unwrap();
    // The sample starts mid-history: only the first swap of each pool and swaps across ticks
    // initialized before the sample may fail, never the math itself.
    let classes: Vec<&str> = r["mismatches"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(
        classes
            .iter()
            .all(|c| ["no_prior_state", "crossed_unknown_tick"].contains(c)),
        "{classes:?}"
    );
    assert_eq!(r["mismatches"]["no_prior_state"], 2);
    let explained: u64 = r["mismatches"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(exact + explained, 3005);
    assert!(exact > 2500, "{exact}");
}
