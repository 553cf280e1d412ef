//! Ingestion from a local anvil, side by side in one run with bare eth_getLogs calls over the same
//! block spans (and bare eth_getLogs plus header batches, which dexlab also fetches).

use std::time::Duration;

use alloy::primitives::U64;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::Filter;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dexlab_data::devnet::{ChainUpConfig, chain_up};
use dexlab_data::ingest::{IngestConfig, ingest};

const BLOCKS: u64 = 3000;
const SPAN: u64 = 1000;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = ChainUpConfig {
        port,
        seed: 3,
        blocks: BLOCKS,
        chain_id: 31337,
        block_time: 2,
        manifest: dir.path().join("m.json"),
        live_block_time_ms: None,
    };
    let (node, m) = rt.block_on(chain_up(&cfg, false)).unwrap();
    let url = node.url.clone();
    let provider = ProviderBuilder::new()
        .disable_recommended_fillers()
        .connect_http(url.parse().unwrap())
        .erased();
    let client = alloy::rpc::client::RpcClient::new_http(url.parse().unwrap());
    let addrs: Vec<_> = m.pools.iter().map(|p| p.address).collect();
    let spans: Vec<(u64, u64)> = (m.first_block..=m.last_block)
        .step_by(SPAN as usize)
        .map(|a| (a, (a + SPAN - 1).min(m.last_block)))
        .collect();
    let n_logs = rt
        .block_on(
            provider.get_logs(
                &Filter::new()
                    .address(addrs.clone())
                    .from_block(m.first_block)
                    .to_block(m.last_block),
            ),
        )
        .unwrap()
        .len();
    eprintln!(
        "devnet: {} blocks, {n_logs} pool logs",
        m.last_block - m.first_block + 1
    );

    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(n_logs as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("bare_eth_getLogs", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut n = 0;
                for &(a, z) in &spans {
                    n += provider
                        .get_logs(
                            &Filter::new()
                                .address(addrs.clone())
                                .from_block(a)
                                .to_block(z),
                        )
                        .await
                        .unwrap()
                        .len();
                }
                n
            })
        })
    });
    g.bench_function("bare_eth_getLogs_plus_headers", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut n = 0;
                for &(a, z) in &spans {
                    n += provider
                        .get_logs(
                            &Filter::new()
                                .address(addrs.clone())
                                .from_block(a)
                                .to_block(z),
                        )
                        .await
                        .unwrap()
                        .len();
                    let mut s = a;
                    while s <= z {
                        let e = z.min(s + 99);
                        let mut batch = client.new_batch();
                        let ws: Vec<_> = (s..=e)
                            .map(|k| {
                                batch
                                    .add_call::<_, Option<alloy::rpc::types::Block>>(
                                        "eth_getBlockByNumber",
                                        &(U64::from(k), false),
                                    )
                                    .unwrap()
                            })
                            .collect();
                        batch.send().await.unwrap();
                        for w in ws {
                            n += usize::from(w.await.unwrap().is_some());
                        }
                        s = e + 1;
                    }
                }
                n
            })
        })
    });
    g.bench_function("dexlab_ingest", |b| {
        b.iter(|| {
            let out = tempfile::tempdir().unwrap();
            let cfg = IngestConfig {
                rpc_url: url.clone(),
                from: Some(m.first_block),
                to: Some(m.last_block),
                pools: m.pools.clone(),
                pool_addresses: vec![],
                out: out.path().to_path_buf(),
                confirmations: 0,
                chunk_blocks: SPAN,
                concurrency: 1,
                rate_per_sec: 0.0,
                timeout: Duration::from_secs(10),
                retries: 3,
                initial_span: SPAN,
                progress: false,
                snapshot: false,
                force: false,
            };
            rt.block_on(ingest(cfg)).unwrap().logs
        })
    });
    g.finish();
    drop(node);
}

criterion_group!(benches, bench);
criterion_main!(benches);
