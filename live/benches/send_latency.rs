//! Event-to-transaction latency inside the live engine, the node's time excluded: for each block,
//! its raw logs in (decoding, the event -> state step, the chain's outcomes booked, the risk
//! limits, the strategy's decision), then for every bundle sent its executor calldata built and
//! its EIP-1559 transaction signed and encoded, ready for `eth_sendRawTransaction`. What live mode
//! also does per bundle and this leaves out is the node's: the `eth_call` check and the send
//! itself (round trips to the node, measured by nothing here).
//!
//! The engine runs in live mode (the chain's executor, the books from an executor's balances) over
//! a dataset's blocks; each bundle is reported filled at its expected output in the next block,
//! as a receipt would be.
//!
//! `DEXLAB_BENCH_DATA=DIR cargo bench --profile dev --workspace --bench send_latency`
//! (without it, the real sample).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use dexlab_engine::chain::ChainOutcome;
use dexlab_engine::config::BacktestConfig;
use dexlab_engine::driver::InFlight;
use dexlab_engine::session::{
    FORMAT, LiveMeta, SessionMeta, SessionMode, SessionRun, StrategySpec, TokenBalance,
};
use dexlab_live::executor::{execute_calldata, executor_legs};
use dexlab_live::signer::{Fees, request, sign};
use dexlab_strategy::market::BlockInfo;
use dexlab_strategy::{FillStatus, registry};

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

fn percentiles(mut us: Vec<f64>) -> String {
    if us.is_empty() {
        return "none".into();
    }
    us.sort_by(f64::total_cmp);
    let q = |p: f64| us[((us.len() - 1) as f64 * p).round() as usize];
    format!(
        "{} blocks: p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        us.len(),
        q(0.5),
        q(0.99),
        us[us.len() - 1]
    )
}

fn main() {
    let (_keep, ds) = dataset();
    let strategy =
        std::env::var("DEXLAB_BENCH_STRATEGY").unwrap_or_else(|_| "price-reversion".into());
    let params = serde_json::json!({});
    let meta = dexlab_data::dataset::read_meta(&ds).expect("dataset");
    let logs = dexlab_data::dataset::read_all_logs(&ds).expect("logs");
    let headers = dexlab_data::dataset::read_all_blocks(&ds).expect("blocks");
    let snapshots = dexlab_data::snapshot::load(&ds).expect("snapshots");
    let mut by_block: BTreeMap<u64, Vec<dexlab_data::RawLog>> = BTreeMap::new();
    for l in logs {
        by_block.entry(l.block_number).or_default().push(l);
    }
    let mut session = SessionMeta {
        format: FORMAT,
        mode: SessionMode::Live,
        chain_id: meta.chain_id,
        pools: meta.pools.clone(),
        strategy: strategy.clone(),
        params,
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
    // The executor holds the config's capital in the quote token.
    let quote_dec = meta
        .pools
        .iter()
        .flat_map(|p| [&p.token0, &p.token1])
        .find(|t| t.address == cfg.env.quote)
        .map_or(18, |t| t.decimals);
    let capital = U256::from(100_000u64) * U256::from(10u64).pow(U256::from(quote_dec));
    session.live = Some(LiveMeta {
        executor: Address::repeat_byte(0xe1),
        operator: Address::repeat_byte(0x0b),
        balances: vec![TokenBalance {
            token: cfg.env.quote,
            amount: capital,
        }],
        operator_balance: U256::from(10u64).pow(U256::from(20)),
        reconcile_every: 10,
    });
    let mut build = |spec: &StrategySpec,
                     m: &dexlab_strategy::market::Market,
                     env: &dexlab_strategy::TradingEnv| {
        let p = registry::parse_params(&spec.strategy, &spec.params).map_err(|e| e.to_string())?;
        registry::build(&spec.strategy, m, env, &p).map_err(|e| e.to_string())
    };
    let mut run = SessionRun::start(&session, &cfg, &mut build).expect("start");
    let key = PrivateKeySigner::random();
    let from = key.address();
    let wallet = EthereumWallet::from(key);
    let executor = Address::repeat_byte(0xe1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");

    let mut all = Vec::with_capacity(headers.len());
    let mut sending = Vec::new();
    let mut per_tx = Vec::new();
    let mut due: Vec<InFlight> = Vec::new();
    let mut nonce = 0u64;
    let mut raw_bytes = 0usize;
    for h in &headers {
        let block = BlockInfo {
            number: h.number,
            timestamp: h.timestamp,
            base_fee: h.base_fee_per_gas.map(u128::from),
            ..BlockInfo::default()
        };
        let logs = by_block.remove(&h.number).unwrap_or_default();
        // Receipts read before the block (node time, not measured): last block's bundles filled.
        let chain: Vec<ChainOutcome> = due
            .drain(..)
            .map(|p| ChainOutcome {
                id: p.id,
                status: FillStatus::Filled,
                block: h.number,
                amount_out: p.bundle.expected_out,
                gas_used: 150_000,
                l2_fee_wei: 150_000 * 10_000_000,
                l1_fee_wei: 0,
                operator_fee_wei: 0,
                tx: None,
                reason: None,
            })
            .collect();
        let t = Instant::now();
        let log = run.step_with(block, &logs, &[], &chain).expect("step");
        let mut signed = 0;
        for p in log
            .sent
            .iter()
            .filter(|p| !log.outcomes.iter().any(|o| o.id == p.id))
        {
            let t1 = Instant::now();
            let legs = executor_legs(&run.driver.market.pools, &p.bundle).expect("legs");
            let input = execute_calldata(
                legs,
                p.bundle.amount_in,
                p.bundle.min_amount_out,
                p.deadline,
            );
            let fees = Fees::for_block(
                block.base_fee.unwrap_or(0),
                p.bundle.priority_fee,
                u128::MAX,
            )
            .expect("fees");
            let tx = request(from, meta.chain_id, nonce, 500_000, fees)
                .with_to(executor)
                .with_input(input);
            let envelope = rt.block_on(sign(&wallet, tx)).expect("sign");
            raw_bytes += alloy::eips::eip2718::Encodable2718::encoded_2718(&envelope).len();
            per_tx.push(t1.elapsed().as_secs_f64() * 1e6);
            nonce += 1;
            signed += 1;
            due.push(p.clone());
        }
        let us = t.elapsed().as_secs_f64() * 1e6;
        all.push(us);
        if signed > 0 {
            sending.push(us);
        }
    }
    println!(
        "send_latency ({strategy}, live mode, {} pools): {} transactions signed ({} bytes raw)",
        meta.pools.len(),
        nonce,
        raw_bytes
    );
    println!(
        "  block in -> last transaction signed, blocks that sent: {}",
        percentiles(sending)
    );
    println!(
        "  block in -> decision and its transactions signed, every block: {}",
        percentiles(all)
    );
    println!(
        "  per transaction (calldata, fees, sign, encode): {}",
        percentiles(per_tx)
    );
}

use alloy::network::TransactionBuilder as _;
