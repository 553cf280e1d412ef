//! Catch-up speed after a gap: a paper session whose process was away while the chain went on
//! resumes `GAP` blocks behind the head and works through them as fast as the node serves them
//! (blocks fetched by number, logs decoded, the engine stepped, each block's record written and
//! synced, every bundle put to the node). Measured for the feed alone and for the whole paper
//! session, over WebSocket and over HTTP polling, on a devnet anvil on this machine.
//!
//! `cargo bench --profile dev -p dexlab-live --bench catchup` (`DEXLAB_BENCH_GAP=N`, default 1000)

use std::time::Instant;

use alloy::providers::{Provider, ProviderBuilder};
use dexlab_data::devnet::ChainUpConfig;
use dexlab_engine::config::BacktestConfig;
use dexlab_engine::session::{FORMAT, SessionMeta, SessionMode, SessionWriter};
use dexlab_live::paper::{PaperOptions, run_paper};
use dexlab_live::{BlockRef, FeedConfig, FeedEvent, NodeFeed, Start, bootstrap};
use dexlab_strategy::market::Market;
use dexlab_strategy::{Strategy, TradingEnv, registry};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn backtest_config() -> BacktestConfig {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/evolve-devnet.toml"
    ))
    .expect("examples/evolve-devnet.toml");
    #[derive(serde::Deserialize)]
    struct Experiment {
        backtest: BacktestConfig,
    }
    toml::from_str::<Experiment>(&text)
        .expect("[backtest]")
        .backtest
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let gap: u64 = std::env::var("DEXLAB_BENCH_GAP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let cfg = ChainUpConfig {
        port: free_port(),
        seed: 3,
        blocks: gap + 20,
        chain_id: 31337,
        block_time: 2,
        manifest: dir.path().join("manifest.json"),
        live_block_time_ms: Some(200),
    };
    let t = Instant::now();
    let d = dexlab_data::devnet::start(&cfg, false)
        .await
        .expect("devnet");
    eprintln!(
        "devnet of {} blocks in {:.1}s",
        cfg.blocks,
        t.elapsed().as_secs_f64()
    );
    let provider = ProviderBuilder::new()
        .connect_http(d.http_url().parse().unwrap())
        .erased();
    let head = provider.get_block_number().await.unwrap();
    let from = head - gap;
    let at = provider
        .get_block_by_number(from.into())
        .await
        .unwrap()
        .unwrap()
        .header;
    let start = BlockRef {
        number: from,
        hash: at.hash,
    };
    let pools = d.manifest.pools.clone();
    let addresses: Vec<_> = pools.iter().map(|p| p.address).collect();
    println!(
        "catch-up of {gap} blocks ({} pools tracked), devnet anvil on 127.0.0.1",
        pools.len()
    );
    println!(
        "{:<34} {:>10} {:>12} {:>10}",
        "what", "seconds", "blocks/s", "logs"
    );

    for (label, url) in [
        ("feed, WebSocket", d.ws_url()),
        ("feed, HTTP polling", d.http_url().to_string()),
    ] {
        let mut feed =
            NodeFeed::new(FeedConfig::new(url, addresses.clone()).starting(Start::After(start)))
                .unwrap();
        let t = Instant::now();
        let (mut n, mut logs) = (0u64, 0usize);
        while n < gap {
            match feed.next().await.expect("feed") {
                FeedEvent::Block(b) => {
                    n += 1;
                    logs += b.logs.len();
                }
                FeedEvent::Reorg { .. } => panic!("reorg on a quiet devnet"),
            }
        }
        let s = t.elapsed().as_secs_f64();
        println!("{label:<34} {s:>10.2} {:>12.0} {logs:>10}", gap as f64 / s);
    }

    for (label, url) in [
        ("paper session, WebSocket", d.ws_url()),
        ("paper session, HTTP polling", d.http_url().to_string()),
    ] {
        // A session bootstrapped at `from` with no block recorded: resuming it is catching up.
        let states = bootstrap(&provider, &pools, start)
            .await
            .expect("bootstrap");
        let sdir = tempfile::tempdir().unwrap();
        let meta = SessionMeta {
            format: FORMAT,
            mode: SessionMode::Paper,
            chain_id: 31337,
            pools: pools.clone(),
            strategy: "cross-venue-arb".into(),
            params: serde_json::json!({"min_profit_bps": 0}),
            backtest: backtest_config(),
            seed: 1,
            model: None,
            bootstrap_block: from,
            bootstrap_hash: Some(at.hash),
            warmup_blocks: 0,
            snapshots: states.pools,
            risk: None,
            live: None,
            deployment: None,
        };
        drop(SessionWriter::create(sdir.path(), &meta).unwrap());
        let opts = PaperOptions {
            rpc: url,
            http_fallback: None,
            session: sdir.path().to_path_buf(),
            blocks: Some(gap),
            registry: None,
            live: None,
        };
        let parsed = registry::parse_params(&meta.strategy, &meta.params).unwrap();
        let mut build = |_: &dexlab_engine::session::StrategySpec,
                         m: &Market,
                         env: &TradingEnv|
         -> Result<Box<dyn Strategy>, String> {
            registry::build("cross-venue-arb", m, env, &parsed).map_err(|e| e.to_string())
        };
        let t = Instant::now();
        let s = run_paper(&opts, None, &mut build, std::future::pending(), |_| {})
            .await
            .expect("paper");
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(s.blocks, gap);
        println!(
            "{label:<34} {secs:>10.2} {:>12.0} {:>10}   bundles {}, node checks {} ({} disagree), engine step p50 {:.0} us p99 {:.0} us",
            gap as f64 / secs,
            "-",
            s.bundles,
            s.node_checked,
            s.node_mismatches,
            s.step_us_p50.unwrap_or(0.0),
            s.step_us_p99.unwrap_or(0.0),
        );
    }
}
