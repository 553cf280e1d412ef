//! Event-to-decision latency inside the engine, as paper and live trading meet it: each block's
//! raw logs in, the strategy's decision out (decoding, the event -> state step, the simulated
//! executor, the strategy), with every pool of the dataset tracked and the node's time excluded.
//! Prints the per-block percentiles and the throughput.
//!
//! `DEXLAB_BENCH_DATA=DIR cargo bench --profile dev -p dexlab-engine --bench step_latency`
//! (`bench/evolve.sh` ingests the devnet dataset it wants; without it, the real sample).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dexlab_engine::config::BacktestConfig;
use dexlab_engine::session::{FORMAT, SessionMeta, SessionMode, SessionRun};
use dexlab_strategy::market::BlockInfo;
use dexlab_strategy::registry;

fn dataset() -> (Option<tempfile::TempDir>, PathBuf) {
    if let Ok(d) = std::env::var("DEXLAB_BENCH_DATA") {
        return (None, PathBuf::from(d));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let data = root.join("../shared/data/univ3-usdc-weth-2024-01-05");
    let dir = tempfile::tempdir().expect("tempdir");
    let ds = dir.path().join("ds");
    dexlab_engine::tape::Tape::import_jsonl(
        &data.join("logs.jsonl"),
        &data.join("block_timestamps.csv"),
        &root.join("examples/univ3-usdc-weth-mainnet.manifest.json"),
        1,
        &ds,
    )
    .expect("import the sample");
    (Some(dir), ds)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let (_keep, ds) = dataset();
    let meta = dexlab_data::dataset::read_meta(&ds).expect("dataset");
    let logs = dexlab_data::dataset::read_all_logs(&ds).expect("logs");
    let headers = dexlab_data::dataset::read_all_blocks(&ds).expect("blocks");
    let snapshots = dexlab_data::snapshot::load(&ds).expect("snapshots");
    let n_logs = logs.len();
    let mut by_block: BTreeMap<u64, Vec<dexlab_data::RawLog>> = BTreeMap::new();
    for l in logs {
        by_block.entry(l.block_number).or_default().push(l);
    }
    let session = SessionMeta {
        format: FORMAT,
        mode: SessionMode::Paper,
        chain_id: meta.chain_id,
        pools: meta.pools.clone(),
        strategy: "cross-venue-arb".into(),
        params: serde_json::json!({}),
        backtest: BacktestConfig::default(),
        seed: 1,
        model: None,
        bootstrap_block: headers.first().map_or(0, |h| h.number.saturating_sub(1)),
        bootstrap_hash: None,
        warmup_blocks: 0,
        snapshots,
        risk: None,
        live: None,
        deployment: None,
    };
    let cfg = SessionRun::exec_config(&session).expect("config");
    let mut build = |_: &dexlab_engine::session::StrategySpec,
                     m: &dexlab_strategy::market::Market,
                     env: &dexlab_strategy::TradingEnv| {
        let p = registry::parse_params(&session.strategy, &session.params)
            .map_err(|e| e.to_string())?;
        registry::build(&session.strategy, m, env, &p).map_err(|e| e.to_string())
    };
    let mut run = SessionRun::start(&session, &cfg, &mut build).expect("start");
    let mut us: Vec<f64> = Vec::with_capacity(headers.len());
    let mut sent = 0usize;
    let started = Instant::now();
    for h in &headers {
        let block = BlockInfo {
            number: h.number,
            timestamp: h.timestamp,
            base_fee: h.base_fee_per_gas.map(u128::from),
            ..BlockInfo::default()
        };
        let logs = by_block.remove(&h.number).unwrap_or_default();
        let t = Instant::now();
        let log = run.step(block, &logs).expect("step");
        us.push(t.elapsed().as_secs_f64() * 1e6);
        sent += log.sent.len();
    }
    let total = started.elapsed().as_secs_f64();
    us.sort_by(f64::total_cmp);
    let q = |p: f64| us[((us.len() - 1) as f64 * p).round() as usize];
    println!(
        "step_latency: {} blocks, {} logs, {} pools, {} bundles sent; per block p50 {:.1} us, \
         p99 {:.1} us, max {:.1} us; {:.0} blocks/s, {:.2} M logs/s",
        us.len(),
        n_logs,
        meta.pools.len(),
        sent,
        q(0.5),
        q(0.99),
        us[us.len() - 1],
        us.len() as f64 / total,
        n_logs as f64 / total / 1e6
    );
}
