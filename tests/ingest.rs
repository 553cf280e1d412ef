//! `dexlab data ingest` against a real anvil: equals the node, survives faults, kills and reorgs,
//! reports and skips malformed logs.

mod proxy;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::sol_types::SolEvent;
use dexlab_data::dataset;
use dexlab_data::types::Protocol;

use crate::support::{Chain, dexlab, ingest, mine, tables};

#[tokio::test(flavor = "multi_thread")]
async fn ingest_equals_what_the_node_returns() {
    let ch = Chain::up(21, 400);
    let out = tempfile::tempdir().unwrap();
    let r = ingest(
        &ch.url(),
        &ch.manifest_path,
        out.path(),
        &["--chunk-blocks", "97", "--initial-span", "13"],
    );
    let m = &ch.manifest;
    let t = tables(out.path());
    let p = ch.provider();
    let node_logs = p
        .get_logs(
            &Filter::new()
                .address(m.pools.iter().map(|x| x.address).collect::<Vec<_>>())
                .from_block(m.first_block)
                .to_block(m.last_block),
        )
        .await
        .unwrap();
    assert!(
        node_logs.len() > 1000,
        "the market should be busy: {} logs",
        node_logs.len()
    );
    assert_eq!(t.logs.len(), node_logs.len());
    for (ours, node) in t.logs.iter().zip(&node_logs) {
        assert_eq!(ours.block_number, node.block_number.unwrap());
        assert_eq!(ours.block_hash, node.block_hash);
        assert_eq!(ours.log_index, node.log_index.unwrap());
        assert_eq!(ours.transaction_hash, node.transaction_hash.unwrap());
        assert_eq!(ours.address, node.address());
        assert_eq!(ours.topics, node.topics());
        assert_eq!(ours.data, node.data().data);
        assert_eq!(ours.chain_id, 31337);
    }
    // Every block in range, with the node's hash and header fields.
    assert_eq!(t.blocks.len() as u64, m.last_block - m.first_block + 1);
    for b in t.blocks.iter().step_by(37) {
        let h = p
            .get_block_by_number(b.number.into())
            .await
            .unwrap()
            .unwrap()
            .header;
        assert_eq!(b.hash, Some(h.hash));
        assert_eq!(b.parent_hash, Some(h.parent_hash));
        assert_eq!(b.timestamp, h.timestamp);
        assert_eq!(b.base_fee_per_gas, h.base_fee_per_gas);
        assert_eq!(b.gas_used, Some(h.gas_used));
    }
    // Every swap log became one swap row; V2 rows carry reserves, V3 rows sqrt price and tick.
    let swap_topics = [
        dexlab_data::decode::univ2::Swap::SIGNATURE_HASH,
        dexlab_data::decode::univ3::Swap::SIGNATURE_HASH,
        dexlab_data::decode::pancakev3::Swap::SIGNATURE_HASH,
        dexlab_data::decode::solidly::Swap::SIGNATURE_HASH,
    ];
    let n_swaps = node_logs
        .iter()
        .filter(|l| swap_topics.contains(&l.topics()[0]))
        .count();
    let swaps = &t.swaps[0];
    assert_eq!(swaps.num_rows(), n_swaps);
    assert_eq!(r["swaps"].as_u64().unwrap() as usize, n_swaps);
    let path = std::path::Path::new("swaps");
    let proto = dataset::string_column(path, swaps, "protocol").unwrap();
    let reserve0 = dataset::string_column(path, swaps, "reserve0").unwrap();
    let sqrt = dataset::string_column(path, swaps, "sqrt_price_x96").unwrap();
    for i in 0..swaps.num_rows() {
        match proto[i].as_deref().unwrap() {
            "uniswap_v2" | "solidly" => assert!(reserve0[i].is_some() && sqrt[i].is_none()),
            "uniswap_v3" | "pancake_v3" | "slipstream" => {
                assert!(sqrt[i].is_some() && reserve0[i].is_none())
            }
            other => panic!("unexpected protocol {other}"),
        }
    }
    // Every family traded, Aerodrome's stable pool included.
    for family in Protocol::ALL {
        assert!(
            proto.iter().any(|p| p.as_deref() == Some(family.as_str())),
            "no {family} swap"
        );
    }
    let pool_col = dataset::string_column(path, swaps, "pool").unwrap();
    let stable = m.pools.iter().find(|x| x.stable == Some(true)).unwrap();
    assert!(
        pool_col
            .iter()
            .any(|p| p.as_deref() == Some(format!("{:#x}", stable.address).as_str())),
        "no swap on the stable pool"
    );
    assert_eq!(r["malformed"].as_array().unwrap().len(), 0);

    // History from pool creation: the replay reproduces every swap exactly.
    let o = dexlab()
        .args(["data", "verify", "--json"])
        .arg(out.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["swaps"].as_u64().unwrap() as usize, n_swaps);
    assert_eq!(v["exact"], v["swaps"], "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_between_ingester_and_node_do_not_change_the_dataset() {
    let ch = Chain::up(22, 300);
    let clean = tempfile::tempdir().unwrap();
    ingest(
        &ch.url(),
        &ch.manifest_path,
        clean.path(),
        &["--chunk-blocks", "25"],
    );
    let proxy = proxy::FaultyProxy::start(ch.port, 42, 0.25).await;
    let faulty = tempfile::tempdir().unwrap();
    let r = ingest(
        &proxy.url(),
        &ch.manifest_path,
        faulty.path(),
        &[
            "--chunk-blocks",
            "25",
            "--initial-span",
            "10",
            "--timeout",
            "0.5",
            "--retries",
            "30",
            "--concurrency",
            "3",
        ],
    );
    let stats = proxy.stats();
    assert!(
        stats.dropped > 0 && stats.stalled > 0 && stats.too_many > 0 && stats.server_errors > 0,
        "{stats:?}"
    );
    assert!(r["retries"].as_u64().unwrap() > 0);
    assert_eq!(tables(faulty.path()), tables(clean.path()));
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_and_resumed_ingestion_gives_the_same_dataset() {
    let ch = Chain::up(23, 600);
    let clean = tempfile::tempdir().unwrap();
    ingest(
        &ch.url(),
        &ch.manifest_path,
        clean.path(),
        &["--chunk-blocks", "20"],
    );
    let out = tempfile::tempdir().unwrap();
    let cp = out.path().join("checkpoint.json");
    let first = ch.manifest.first_block;
    for round in 0..3 {
        // Slow enough (rate limit) to be killed part-way.
        let mut child = dexlab()
            .args([
                "data",
                "ingest",
                "--rpc",
                &ch.url(),
                "--quiet",
                "--chunk-blocks",
                "20",
                "--rate",
                "40",
            ])
            .arg("--manifest")
            .arg(&ch.manifest_path)
            .arg("--out")
            .arg(out.path())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let target = first + 100 * (round + 1);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let next = std::fs::read_to_string(&cp)
                .ok()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                .and_then(|v| v["next_block"].as_u64())
                .unwrap_or(0);
            if next >= target || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let r = ingest(
        &ch.url(),
        &ch.manifest_path,
        out.path(),
        &["--chunk-blocks", "20"],
    );
    assert!(
        r["resumed_at"].as_u64().unwrap() > first,
        "the last run must resume, not restart: {r}"
    );
    assert_eq!(tables(out.path()), tables(clean.path()));
}

/// Sends a few pool-touching trades through the devnet router and mines them, one block each.
async fn trade_blocks(ch: &Chain, n: u64, seed: u64) {
    use dexlab_data::devnet::market::router_v3_swap_calldata;
    let p = ch.provider();
    let accounts = p.get_accounts().await.unwrap();
    let v3 = ch
        .manifest
        .pools
        .iter()
        .filter(|x| x.protocol.is_v3())
        .collect::<Vec<_>>();
    for i in 0..n {
        let pool = v3[((seed + i) as usize) % v3.len()];
        let from = accounts[2 + (i as usize % 4)];
        let nonce = p.get_transaction_count(from).pending().await.unwrap();
        let amount = U256::from(10u64).pow(U256::from(pool.token0.decimals as u64))
            * U256::from(1 + seed * 7 + i);
        let tx = TransactionRequest::default()
            .with_from(from)
            .with_to(ch.manifest.router.unwrap())
            .with_input(router_v3_swap_calldata(
                pool.address,
                (seed + i).is_multiple_of(2),
                amount,
            ))
            .with_nonce(nonce)
            .with_gas_limit(2_000_000)
            .with_max_fee_per_gas(100_000_000_000)
            .with_max_priority_fee_per_gas(1)
            .with_chain_id(31337);
        let _ = p.send_transaction(tx).await.unwrap();
        mine(&p, 1).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reorg_is_detected_and_the_dataset_follows_the_new_chain() {
    let ch = Chain::up(24, 150);
    let p = ch.provider();
    let snapshot: U256 = p.raw_request("evm_snapshot".into(), ()).await.unwrap();
    trade_blocks(&ch, 8, 1).await;
    let out = tempfile::tempdir().unwrap();
    ingest(
        &ch.url(),
        &ch.manifest_path,
        out.path(),
        &["--chunk-blocks", "40"],
    );
    let old_tables = tables(out.path());
    // Another branch from the snapshot, longer than the first.
    let reverted: bool = p
        .raw_request("evm_revert".into(), (snapshot,))
        .await
        .unwrap();
    assert!(reverted);
    let _: bool = p
        .raw_request("anvil_setNextBlockTimestamp".into(), (2_000_000_000u64,))
        .await
        .map(|_: serde_json::Value| true)
        .unwrap();
    trade_blocks(&ch, 11, 2).await;
    let r = ingest(
        &ch.url(),
        &ch.manifest_path,
        out.path(),
        &["--chunk-blocks", "40"],
    );
    assert_eq!(r["reorgs"].as_array().unwrap().len(), 1, "{r}");
    let fresh = tempfile::tempdir().unwrap();
    ingest(
        &ch.url(),
        &ch.manifest_path,
        fresh.path(),
        &["--chunk-blocks", "40"],
    );
    let new_tables = tables(out.path());
    assert_ne!(new_tables, old_tables);
    assert_eq!(new_tables, tables(fresh.path()));
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_logs_are_reported_with_their_location_and_skipped() {
    let ch = Chain::up(25, 20);
    let p = ch.provider();
    let from = p.get_accounts().await.unwrap()[15];
    // A contract whose fallback emits LOG1(topic0 = Uniswap V3 Swap) with 100 bytes of data: a
    // Swap-looking log that no real pool could emit (a Swap has 3 topics and 160 data bytes).
    let topic = dexlab_data::decode::univ3::Swap::SIGNATURE_HASH;
    let mut runtime = vec![0x7f];
    runtime.extend_from_slice(topic.as_slice());
    runtime.extend_from_slice(&[0x60, 0x64, 0x60, 0x00, 0xa1, 0x00]); // PUSH1 100 PUSH1 0 LOG1 STOP
    let mut init = vec![
        0x60,
        runtime.len() as u8,
        0x80,
        0x60,
        0x0c,
        0x60,
        0x00,
        0x39,
        0x60,
        0x00,
        0xf3,
        0x00,
    ];
    init.extend(&runtime);
    let send = |to: Option<Address>, input: Vec<u8>, nonce: u64| {
        let mut tx = TransactionRequest::default()
            .with_from(from)
            .with_input(Bytes::from(input))
            .with_nonce(nonce)
            .with_gas_limit(300_000)
            .with_max_fee_per_gas(100_000_000_000)
            .with_max_priority_fee_per_gas(1)
            .with_chain_id(31337);
        match to {
            Some(a) => tx.set_to(a),
            None => tx.set_create(),
        }
        tx
    };
    let nonce = p.get_transaction_count(from).await.unwrap();
    let emitter = from.create(nonce);
    let _ = p.send_transaction(send(None, init, nonce)).await.unwrap();
    mine(&p, 1).await;
    assert!(!p.get_code_at(emitter).await.unwrap().is_empty());
    let tx = *p
        .send_transaction(send(Some(emitter), vec![], nonce + 1))
        .await
        .unwrap()
        .tx_hash();
    mine(&p, 1).await;
    let receipt = p.get_transaction_receipt(tx).await.unwrap().unwrap();
    let bad_block = receipt.block_number.unwrap();

    // The emitter is listed as one more V3 pool of the manifest.
    let mut m = ch.manifest.clone();
    let mut fake = m.pools.iter().find(|x| x.protocol.is_v3()).unwrap().clone();
    fake.address = emitter;
    m.pools.push(fake);
    m.last_block = bad_block;
    let path = ch.dir.path().join("with-emitter.json");
    m.save(&path).unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = dexlab()
        .args(["data", "ingest", "--rpc", &ch.url(), "--json", "--quiet"])
        .arg("--manifest")
        .arg(&path)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "malformed input is not a clean run: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let malformed = r["malformed"].as_array().unwrap();
    assert_eq!(malformed.len(), 1, "{r}");
    let msg = malformed[0].as_str().unwrap();
    assert!(
        msg.contains(&format!("block {bad_block}"))
            && msg.contains(&format!("{tx}"))
            && msg.contains("log index"),
        "{msg}"
    );
    assert!(msg.contains("expected 3 topics, found 1"), "{msg}");
    // Kept in logs, absent from swaps; everything else ingested.
    let t = tables(out.path());
    assert!(t.logs.iter().any(|l| l.address == emitter));
    let clean = tempfile::tempdir().unwrap();
    ingest(
        &ch.url(),
        &ch.manifest_path,
        clean.path(),
        &["--to", &bad_block.to_string()],
    );
    assert_eq!(t.swaps, tables(clean.path()).swaps);
}

#[tokio::test(flavor = "multi_thread")]
async fn pools_given_by_address_are_recognised_from_the_chain() {
    let ch = Chain::up(26, 30);
    let m = &ch.manifest;
    let out = tempfile::tempdir().unwrap();
    let mut args = vec![
        "data".to_string(),
        "ingest".into(),
        "--rpc".into(),
        ch.url(),
        "--quiet".into(),
        "--json".into(),
        "--from".into(),
        m.first_block.to_string(),
        "--to".into(),
        m.last_block.to_string(),
        "--pool".into(),
    ];
    args.extend(m.pools.iter().map(|p| format!("{:#x}", p.address)));
    let o = dexlab()
        .args(&args)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let meta = dataset::read_meta(out.path()).unwrap();
    assert_eq!(meta.pools.len(), m.pools.len());
    for want in &m.pools {
        let got = meta
            .pools
            .iter()
            .find(|p| p.address == want.address)
            .unwrap();
        assert_eq!(
            (got.protocol, got.fee, got.tick_spacing, got.stable),
            (want.protocol, want.fee, want.tick_spacing, want.stable),
            "{}",
            want.address
        );
        assert_eq!((&got.token0, &got.token1), (&want.token0, &want.token1));
    }
    // The same swaps as an ingest driven by the manifest.
    let by_manifest = tempfile::tempdir().unwrap();
    ingest(
        &ch.url(),
        &ch.manifest_path,
        by_manifest.path(),
        &["--to", &m.last_block.to_string()],
    );
    assert_eq!(tables(out.path()).logs, tables(by_manifest.path()).logs);
}

#[test]
fn an_unreachable_node_is_a_clear_error_without_the_api_key() {
    let port = crate::support::free_port();
    let out = tempfile::tempdir().unwrap();
    let url = format!("http://user:hunter2secret@127.0.0.1:{port}/v2/APIKEY123");
    let o = dexlab()
        .args([
            "data",
            "ingest",
            "--rpc",
            &url,
            "--from",
            "0",
            "--pool",
            "0x88e6a0c2ddd26feeb64f039a2c41296fcb3f5640",
            "--retries",
            "2",
            "--timeout",
            "1",
        ])
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("eth_chainId") && err.contains("gave up after 2 attempts"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2secret") && !err.contains("APIKEY123"),
        "secret leaked: {err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn features_build_on_a_simulated_chain() {
    let ch = Chain::up(27, 300);
    let data = tempfile::tempdir().unwrap();
    ingest(&ch.url(), &ch.manifest_path, data.path(), &[]);
    let out = tempfile::tempdir().unwrap();
    let o = dexlab()
        .args(["features", "build", "--json", "--config"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/features.toml"
        ))
        .arg("--data")
        .arg(data.path())
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        r["leakage_check_blocks"].as_array().unwrap().len() >= 2,
        "{r}"
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("manifest.json")).unwrap())
            .unwrap();
    let names: Vec<&str> = m["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    // Every venue pair of the same tokens has a spread; V3 and V2 pools have depth.
    let spreads = names
        .iter()
        .filter(|n| n.starts_with("spread_bps__"))
        .count();
    let mut venues: HashMap<(Address, Address), usize> = HashMap::new();
    for p in &ch.manifest.pools {
        *venues
            .entry((p.token0.address, p.token1.address))
            .or_default() += 1;
    }
    let pairs: usize = venues.values().map(|n| n * (n - 1) / 2).sum();
    // WETH/USDC on 8 venues, WETH/WBTC on 6, USDC/DAI on 4.
    assert_eq!(pairs, 28 + 15 + 6);
    assert_eq!(spreads, pairs, "{venues:?}");
    assert!(names.contains(&"uniswap_v2_weth_usdc_3000__depth_up_10bps"));
    assert!(names.contains(&"pancakeswap_v3_weth_wbtc_500__depth_down_50bps"));
    assert_eq!(
        m["rows"].as_u64().unwrap(),
        ch.manifest.last_block - ch.manifest.first_block + 1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ingesting_from_mid_history_snapshots_pools_so_replay_stays_exact() {
    let ch = Chain::up(28, 200);
    let mid = (ch.manifest.first_block + ch.manifest.last_block) / 2;
    let verify = |dir: &std::path::Path| -> serde_json::Value {
        let o = dexlab()
            .args(["data", "verify", "--json"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let with = tempfile::tempdir().unwrap();
    ingest(
        &ch.url(),
        &ch.manifest_path,
        with.path(),
        &["--from", &mid.to_string()],
    );
    let snaps: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(with.path().join("snapshots.json")).unwrap())
            .unwrap();
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 18, "one snapshot per pool");
    assert_eq!(snaps.iter().filter(|s| s["kind"] == "v3").count(), 11);
    let v = verify(with.path());
    let v3_swaps: u64 = v["by_pool"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(addr, _)| {
            ch.manifest
                .pools
                .iter()
                .any(|p| p.protocol.is_v3() && format!("{:#x}", p.address) == **addr)
        })
        .map(|(_, c)| c[0].as_u64().unwrap())
        .sum();
    assert!(v3_swaps > 100);
    // With every pool snapshotted, every swap is reproduced from the first block on.
    assert_eq!(v["exact"], v["swaps"], "{v}");
    // Without the snapshot the same data cannot be replayed exactly.
    let without = tempfile::tempdir().unwrap();
    ingest(
        &ch.url(),
        &ch.manifest_path,
        without.path(),
        &["--from", &mid.to_string(), "--no-snapshot"],
    );
    let w = verify(without.path());
    assert!(
        w["exact"].as_u64().unwrap() < v["exact"].as_u64().unwrap(),
        "{w}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn transactions_record_what_every_event_transaction_paid() {
    let ch = Chain::up(29, 150);
    let out = tempfile::tempdir().unwrap();
    let r = ingest(
        &ch.url(),
        &ch.manifest_path,
        out.path(),
        &["--chunk-blocks", "37"],
    );
    assert_eq!(r["receipts_method"], "eth_getBlockReceipts", "{r}");
    let t = tables(out.path());
    let txs = t
        .transactions
        .clone()
        .expect("an ingested dataset has a transactions table");
    assert_eq!(r["transactions"].as_u64().unwrap() as usize, txs.len());
    // One row per transaction that emitted a tracked log, no more, in (block, index) order.
    let mut want: Vec<(u64, u64, B256)> = t
        .logs
        .iter()
        .map(|l| (l.block_number, l.transaction_index, l.transaction_hash))
        .collect();
    want.sort();
    want.dedup();
    let got: Vec<(u64, u64, B256)> = txs
        .iter()
        .map(|x| (x.block_number, x.transaction_index, x.transaction_hash))
        .collect();
    assert_eq!(got, want);
    assert!(
        txs.len() > 200,
        "the market should be busy: {} txs",
        txs.len()
    );
    let base_fee: HashMap<u64, u64> = t
        .blocks
        .iter()
        .map(|b| (b.number, b.base_fee_per_gas.unwrap()))
        .collect();
    let p = ch.provider();
    let accounts = p.get_accounts().await.unwrap();
    let informed = &accounts[dexlab_data::devnet::INFORMED];
    let noise = &accounts[dexlab_data::devnet::NOISE];
    let (mut informed_fees, mut noise_fees) = (Vec::new(), Vec::new());
    for (i, x) in txs.iter().enumerate() {
        assert_eq!(x.chain_id, 31337);
        assert!(x.status, "a transaction that emitted logs succeeded");
        let base = u128::from(base_fee[&x.block_number]);
        assert_eq!(
            x.priority_fee_per_gas,
            Some(x.effective_gas_price - base),
            "{x:?}"
        );
        assert_eq!(
            (
                x.l1_fee,
                x.l1_gas_used,
                x.l1_gas_price,
                x.l1_base_fee_scalar
            ),
            (None, None, None, None),
            "anvil is no OP-stack chain"
        );
        let fee = x.priority_fee_per_gas.unwrap();
        if informed.contains(&x.from) {
            informed_fees.push(fee);
        } else if noise.contains(&x.from) {
            noise_fees.push(fee);
        }
        if i % 7 == 0 {
            let rc = p
                .get_transaction_receipt(x.transaction_hash)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(rc.from, x.from);
            assert_eq!(rc.to, x.to);
            assert_eq!(rc.gas_used, x.gas_used);
            assert_eq!(rc.effective_gas_price, x.effective_gas_price);
            assert_eq!(rc.block_number, Some(x.block_number));
            assert_eq!(rc.transaction_index, Some(x.transaction_index));
        }
    }
    // The arbitrage outbids the noise: the queue position the backtester needs.
    assert!(!informed_fees.is_empty() && !noise_fees.is_empty());
    assert!(
        informed_fees.iter().min() > noise_fees.iter().max(),
        "informed {:?}.. vs noise ..{:?}",
        informed_fees.iter().min(),
        noise_fees.iter().max()
    );
    // inspect reports the table.
    let o = dexlab()
        .args(["data", "inspect", "--json"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let summary = &v["transactions"];
    assert_eq!(summary["rows"].as_u64().unwrap() as usize, txs.len());
    let all_fees: Vec<u128> = txs.iter().filter_map(|x| x.priority_fee_per_gas).collect();
    assert_eq!(
        summary["priority_fee_max"].as_str().unwrap(),
        all_fees.iter().max().unwrap().to_string()
    );

    // A node without eth_getBlockReceipts: the same table from eth_getTransactionReceipt.
    let proxy = proxy::FaultyProxy::hiding(ch.port, "eth_getBlockReceipts").await;
    let fallback = tempfile::tempdir().unwrap();
    let r = ingest(
        &proxy.url(),
        &ch.manifest_path,
        fallback.path(),
        &["--chunk-blocks", "37"],
    );
    assert_eq!(r["receipts_method"], "eth_getTransactionReceipt", "{r}");
    assert_eq!(tables(fallback.path()).transactions, Some(txs));
}
