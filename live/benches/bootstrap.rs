//! A session's bootstrap: the tracked pools' state read from the node at one block, for the
//! 18-pool devnet, with V3-style ticks read by the tick lens (one `eth_call` per pool, the code put
//! in place by a state override) and word by word (one call per tick-bitmap word of the whole
//! range and one per initialized tick), side by side in one run on one anvil.
//!
//! `cargo bench --profile dev --workspace --bench bootstrap` (`DEXLAB_BENCH_RUNS=N`, default 5)

use std::time::Instant;

use alloy::providers::{Provider, ProviderBuilder};
use dexlab_data::devnet::ChainUpConfig;
use dexlab_data::snapshot::{TickRead, read_ticks};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::var("DEXLAB_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let cfg = ChainUpConfig {
        port: free_port(),
        seed: 2,
        blocks: 500,
        chain_id: 31337,
        block_time: 2,
        manifest: dir.path().join("manifest.json"),
        live_block_time_ms: None,
    };
    let d = dexlab_data::devnet::start(&cfg, false)
        .await
        .expect("devnet");
    let provider = ProviderBuilder::new()
        .connect_http(d.http_url().parse().unwrap())
        .erased();
    let head = provider.get_block_number().await.unwrap();
    let at = alloy::eips::BlockId::number(head);
    let v3: Vec<_> = d
        .manifest
        .pools
        .iter()
        .filter_map(|p| p.tick_spacing.map(|s| (p.address, s)))
        .collect();
    let mut ticks = 0;
    let mut secs = [Vec::new(), Vec::new()];
    for _ in 0..runs {
        for (k, how) in [TickRead::Lens, TickRead::Words].into_iter().enumerate() {
            let t = Instant::now();
            let mut n = 0;
            for &(pool, spacing) in &v3 {
                n += read_ticks(&provider, pool, spacing, at, how)
                    .await
                    .expect("ticks")
                    .len();
            }
            secs[k].push(t.elapsed().as_secs_f64());
            ticks = n;
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (lens, words) = (median(&mut secs[0]), median(&mut secs[1]));
    println!(
        "bootstrap ticks: {} V3-style pools (spacings {:?}), {ticks} initialized ticks, block {head}, \
         median of {runs}: lens {:.3} s, word by word {:.3} s ({:.0}x)",
        v3.len(),
        v3.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        lens,
        words,
        words / lens
    );
    d.node.stop().await;
}
