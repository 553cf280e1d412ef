//! `dexlab chain up`: real contracts, a real market, reproducible by seed.

use alloy::providers::Provider;

use dexlab_data::types::Protocol;

use crate::support::Chain;

#[tokio::test(flavor = "multi_thread")]
async fn same_seed_same_chain_other_seed_other_chain() {
    let a = Chain::up(11, 60);
    let b = Chain::up(11, 60);
    let c = Chain::up(12, 60);
    let last = a.manifest.last_block;
    assert_eq!(last, b.manifest.last_block);
    let hash = |ch: &Chain| {
        let p = ch.provider();
        async move {
            p.get_block_by_number(last.into())
                .await
                .unwrap()
                .unwrap()
                .header
                .hash
        }
    };
    let (ha, hb, hc) = (hash(&a).await, hash(&b).await, hash(&c).await);
    assert_eq!(ha, hb, "same seed must give the same chain");
    assert_ne!(ha, hc, "another seed must give another chain");
    assert_eq!(a.manifest.pools, b.manifest.pools);
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_describes_real_pools_on_every_dex() {
    let ch = Chain::up(5, 30);
    let m = &ch.manifest;
    let dexes: std::collections::BTreeSet<_> = m.pools.iter().map(|p| p.dex.as_str()).collect();
    assert_eq!(
        dexes.into_iter().collect::<Vec<_>>(),
        [
            "aerodrome",
            "aerodrome-slipstream",
            "baseswap",
            "pancakeswap-v3",
            "uniswap-v2",
            "uniswap-v3"
        ]
    );
    // Every family, and the stable pair on each family that has one.
    for family in Protocol::ALL {
        assert!(
            m.pools.iter().any(|p| p.protocol == family),
            "no {family} pool"
        );
    }
    let stable_pair: Vec<_> = m
        .pools
        .iter()
        .filter(|p| {
            let mut s = [p.token0.symbol.as_str(), p.token1.symbol.as_str()];
            s.sort_unstable();
            s == ["DAI", "USDC"]
        })
        .map(|p| (p.dex.as_str(), p.stable))
        .collect();
    assert_eq!(stable_pair.len(), 4, "{stable_pair:?}");
    assert!(stable_pair.contains(&("aerodrome", Some(true))));
    let decimals: std::collections::BTreeMap<_, _> = m
        .tokens
        .iter()
        .map(|t| (t.symbol.as_str(), t.decimals))
        .collect();
    assert_eq!(decimals["WETH"], 18);
    assert_eq!(decimals["USDC"], 6);
    let p = ch.provider();
    for pool in &m.pools {
        let mut code = p.get_code_at(pool.address).await.unwrap();
        // Aerodrome's and Slipstream's pools are EIP-1167 clones of one implementation.
        if code.len() == 45
            && code.starts_with(&[0x36, 0x3d, 0x3d, 0x37, 0x3d, 0x3d, 0x3d, 0x36, 0x3d, 0x73])
        {
            let implementation = alloy::primitives::Address::from_slice(&code[10..30]);
            code = p.get_code_at(implementation).await.unwrap();
        }
        assert!(code.len() > 1000, "{} has no contract code", pool.address);
    }
    // Several V3 ranges, not one full-range position.
    let logs = p
        .get_logs(
            &alloy::rpc::types::Filter::new()
                .address(m.pools.iter().map(|x| x.address).collect::<Vec<_>>())
                .from_block(m.first_block)
                .to_block(m.last_block),
        )
        .await
        .unwrap();
    let mints = logs
        .iter()
        .filter(|l| {
            l.topics()[0]
                == <dexlab_data::decode::univ3::Mint as alloy::sol_types::SolEvent>::SIGNATURE_HASH
        })
        .count();
    assert!(mints >= 10, "{mints} V3 mints");
}

/// anvil mines each block in priority-fee order, as Base's sequencer does, and the informed
/// traders outbid the noise traders, so the arbitrage of a block lands before its noise.
#[tokio::test(flavor = "multi_thread")]
async fn blocks_are_ordered_by_priority_fee_and_arbitrage_outbids_noise() {
    let market_blocks = 40;
    let ch = Chain::up(13, market_blocks);
    let m = &ch.manifest;
    let p = ch.provider();
    let accounts = p.get_accounts().await.unwrap();
    let informed = &accounts[dexlab_data::devnet::INFORMED];
    let noise = &accounts[dexlab_data::devnet::NOISE];
    let mut mixed_blocks = 0;
    let mut bids = 0;
    for n in m.first_block..=m.last_block {
        let header = p
            .get_block_by_number(n.into())
            .await
            .unwrap()
            .unwrap()
            .header;
        let base = u128::from(header.base_fee_per_gas.unwrap());
        let mut receipts = p.get_block_receipts(n.into()).await.unwrap().unwrap();
        receipts.sort_by_key(|r| r.transaction_index);
        // (sender, priority fee paid) in block order.
        let txs: Vec<(alloy::primitives::Address, u128)> = receipts
            .iter()
            .map(|r| (r.from, r.effective_gas_price - base))
            .collect();
        // Each transaction pays at least as much as the next transaction of every other sender
        // still waiting (a sender's own transactions stay in nonce order whatever they bid).
        for (i, (from, fee)) in txs.iter().enumerate() {
            let mut next_of: std::collections::HashMap<_, u128> = Default::default();
            for (f, q) in &txs[i + 1..] {
                next_of.entry(*f).or_insert(*q);
            }
            for (other, q) in next_of {
                if other != *from {
                    assert!(
                        *fee >= q,
                        "block {n}: tx {i} pays {fee}, a later tx of another sender {q}: {txs:?}"
                    );
                }
            }
        }
        // Deployment blocks (approvals from the traders' accounts) all pay the default fee.
        if n + market_blocks <= m.last_block {
            continue;
        }
        let first_noise = txs.iter().position(|t| noise.contains(&t.0));
        let last_informed = txs.iter().rposition(|t| informed.contains(&t.0));
        if let (Some(a), Some(b)) = (first_noise, last_informed) {
            mixed_blocks += 1;
            assert!(b < a, "block {n}: noise before arbitrage: {txs:?}");
        }
        bids += txs
            .iter()
            .filter(|t| t.1 != dexlab_data::devnet::DEFAULT_PRIORITY_FEE)
            .count();
    }
    // Nothing left behind: anvil's fee order drops a transaction that outbids its own pending
    // predecessor, which would leave every later nonce of that sender queued forever.
    let pool: serde_json::Value = p.raw_request("txpool_status".into(), ()).await.unwrap();
    assert_eq!(
        (pool["pending"].as_str(), pool["queued"].as_str()),
        (Some("0x0"), Some("0x0")),
        "{pool}"
    );
    assert!(mixed_blocks > 5, "{mixed_blocks} blocks with both kinds");
    assert!(bids > 50, "{bids} transactions bid their own priority fee");
}

/// `chain up --live`: the manifest and both URLs before going live, blocks at about the block
/// time with swaps in them, and a clean stop on SIGTERM that takes anvil with it.
#[test]
fn chain_up_live_mines_until_sigterm_then_stops_with_its_node() {
    use std::io::BufRead;
    use std::time::{Duration, Instant};

    // Flags that make no sense without --live, or with --exit, are refused up front.
    for args in [
        &["chain", "up", "--block-time-ms", "200"][..],
        &["chain", "up", "--live", "--exit"][..],
    ] {
        let o = crate::support::dexlab().args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }

    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.json");
    let port = crate::support::free_port();
    let mut child = crate::support::dexlab()
        .args([
            "chain",
            "up",
            "--live",
            "--blocks",
            "3",
            "--block-time-ms",
            "200",
        ])
        .args(["--seed", "17", "--port", &port.to_string()])
        .arg("--manifest")
        .arg(&manifest)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let rpc = lines.next().unwrap().unwrap();
    let ws = lines.next().unwrap().unwrap();
    assert_eq!(rpc, format!("rpc http://127.0.0.1:{port}"));
    assert_eq!(ws, format!("ws ws://127.0.0.1:{port}"));
    // Written before going live, with the WebSocket URL for feeds.
    let m = dexlab_data::manifest::ChainManifest::load(&manifest).unwrap();
    assert_eq!(m.ws_url.as_deref(), Some(&ws[3..]));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let p = alloy::providers::ProviderBuilder::new()
        .disable_recommended_fillers()
        .connect_http(rpc[4..].parse().unwrap())
        .erased();
    let (from, t0) = (rt.block_on(p.get_block_number()).unwrap(), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let to = rt.block_on(p.get_block_number()).unwrap();
    let per_s = (to - from) as f64 / t0.elapsed().as_secs_f64();
    assert!(
        (3.0..=6.0).contains(&per_s),
        "{per_s:.2} blocks/s at 200 ms"
    );
    let swaps = rt
        .block_on(
            p.get_logs(
                &alloy::rpc::types::Filter::new()
                    .address(m.pools.iter().map(|x| x.address).collect::<Vec<_>>())
                    .from_block(from + 1)
                    .to_block(to),
            ),
        )
        .unwrap()
        .len();
    assert!(
        swaps as u64 >= to - from,
        "{swaps} pool logs in {} blocks",
        to - from
    );

    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "chain up --live ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "anvil outlived chain up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The tick lens (one `eth_call` per pool, `contracts/DexlabTickLens.sol` put in place by a state
/// override) reads exactly the ticks that the word-by-word reading does, on every V3-style pool
/// of the devnet (Uniswap V3, PancakeSwap V3, Slipstream; tick spacings 1 to 200).
#[tokio::test(flavor = "multi_thread")]
async fn the_tick_lens_reads_what_the_word_by_word_reading_reads() {
    use dexlab_data::snapshot::{TickRead, read_ticks};
    let ch = Chain::up(13, 120);
    let p = ch.provider();
    let at = alloy::eips::BlockId::number(ch.manifest.last_block);
    let mut pools = 0;
    let mut ticks = 0;
    for info in ch
        .manifest
        .pools
        .iter()
        .filter(|i| i.tick_spacing.is_some())
    {
        let spacing = info.tick_spacing.unwrap();
        let lens = read_ticks(&p, info.address, spacing, at, TickRead::Lens)
            .await
            .unwrap();
        let words = read_ticks(&p, info.address, spacing, at, TickRead::Words)
            .await
            .unwrap();
        assert_eq!(lens, words, "pool {} ({})", info.address, info.dex);
        pools += 1;
        ticks += lens.len();
    }
    assert!(
        pools >= 6 && ticks > pools * 2,
        "{pools} pools, {ticks} ticks"
    );
}
