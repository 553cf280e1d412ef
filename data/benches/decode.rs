//! Decoding throughput: typed decoding alone, decoding into dataset rows, and reading logs from
//! Parquet and from eth_getLogs JSON. Input: the real USDC/WETH sample repeated to 200k logs.

use std::collections::HashMap;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dexlab_data::{RawLog, dataset, decode, derive, import, manifest::ChainManifest};

const REPEAT: u64 = 64;

fn sample_logs() -> (Vec<RawLog>, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/univ3-usdc-weth-2024-01-05/logs.jsonl");
    let text = std::fs::read_to_string(&root)
        .expect("the shared sample (../shared/data) is needed for this bench");
    let base = import::parse_json_logs(&root, &text, 1).unwrap().logs;
    let mut logs = Vec::new();
    let mut json = String::new();
    for r in 0..REPEAT {
        for l in &base {
            let mut l = l.clone();
            l.block_number += r * 10_000;
            logs.push(l);
        }
        json.push_str(&text);
    }
    (logs, json)
}

fn bench(c: &mut Criterion) {
    let (logs, json) = sample_logs();
    let manifest = ChainManifest::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/univ3-usdc-weth-mainnet.manifest.json"),
    )
    .unwrap();
    let pools: HashMap<_, _> = manifest
        .pools
        .iter()
        .map(|p| (p.address, p.clone()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let pq = dir.path().join("logs.parquet");
    dataset::write_parquet(&pq, &dataset::logs_batch(&logs).unwrap()).unwrap();

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(logs.len() as u64));
    g.sample_size(10);
    g.bench_function("typed_decode", |b| {
        b.iter(|| {
            logs.iter()
                .filter(|l| decode::decode_log(l).is_ok())
                .count()
        })
    });
    g.bench_function("derive_rows", |b| {
        b.iter(|| derive::derive(&logs, &pools, &|_| None).swaps.len())
    });
    g.bench_function("read_parquet", |b| {
        b.iter(|| dataset::read_logs_file(&pq, 1).unwrap().len())
    });
    g.bench_function("read_parquet_and_decode", |b| {
        b.iter(|| {
            dataset::read_logs_file(&pq, 1)
                .unwrap()
                .iter()
                .filter(|l| decode::decode_log(l).is_ok())
                .count()
        })
    });
    g.bench_function("parse_json_and_decode", |b| {
        b.iter(|| {
            import::parse_json_logs(Path::new("x"), &json, 1)
                .unwrap()
                .logs
                .iter()
                .filter(|l| decode::decode_log(l).is_ok())
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
