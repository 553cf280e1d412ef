//! Throughput of the research core:
//! - state replay alone (events/s, one thread), on the real USDC/WETH sample tiled to ~0.3M events;
//! - the cross-venue arbitrage strategy with exact sizing (events/s, one thread), on the dataset
//!   in `DEXLAB_BENCH_DATA` (`bench/evolve.sh` ingests a simulated chain with frequent
//!   opportunities), else on the real sample, where the two fee tiers never drift apart by more
//!   than their fees (no sizing happens there);
//! - GA fitness evaluations/s on one and on two rayon threads, side by side.
//!
//! `bench/evolve.sh` (or `cargo bench --profile dev -p dexlab-evolve --bench backtest`)

use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dexlab_evolve::config::ExperimentConfig;
use dexlab_evolve::optimise::{EvalCtx, initial_population};
use dexlab_evolve::tape::{Tape, apply};
use dexlab_strategy::registry;

fn sample() -> (tempfile::TempDir, Tape) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let data = root.join("../shared/data/univ3-usdc-weth-2024-01-05");
    let dir = tempfile::tempdir().expect("tempdir");
    let tape = Tape::import_jsonl(
        &data.join("logs.jsonl"),
        &data.join("block_timestamps.csv"),
        &root.join("examples/univ3-usdc-weth-mainnet.manifest.json"),
        1,
        &dir.path().join("ds"),
    )
    .expect("import the sample");
    (dir, tape)
}

/// The tape repeated `n` times, block numbers and timestamps shifted so it stays one history.
fn tile(t: &Tape, n: usize) -> Tape {
    let mut out = t.clone();
    out.blocks.clear();
    out.events.clear();
    out.block_starts.clear();
    let span_b = t
        .blocks
        .last()
        .map_or(0, |b| b.number - t.blocks[0].number + 1);
    let span_t = t
        .blocks
        .last()
        .map_or(0, |b| b.timestamp - t.blocks[0].timestamp + 12);
    for k in 0..n as u64 {
        for (i, b) in t.blocks.iter().enumerate() {
            let mut b = *b;
            b.number += k * span_b;
            b.timestamp += k * span_t;
            out.block_starts.push(out.events.len() as u32);
            out.blocks.push(b);
            out.events.extend_from_slice(t.events_of(i));
        }
    }
    out.block_starts.push(out.events.len() as u32);
    out
}

fn benches(c: &mut Criterion) {
    let (_dir, base) = sample();
    let tape = tile(&base, 100);
    let n_events = tape.events.len() as u64;
    eprintln!("tape: {} events in {} blocks", n_events, tape.blocks.len());

    let mut cfg = ExperimentConfig::default();
    cfg.backtest.gas.op_stack = false;
    cfg.backtest.gas.default_base_fee_wei = 15_000_000_000;
    let exec = cfg.backtest.resolve(&tape, 1).expect("resolve");

    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Elements(n_events));
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.bench_function("state_replay_only", |b| {
        b.iter(|| {
            let mut m = tape.market();
            for i in 0..tape.blocks.len() {
                for e in tape.events_of(i) {
                    apply(&mut m, e);
                }
            }
            std::hint::black_box(m.states.len())
        })
    });
    // The whole backtester loop (queue, marks, close-out) with a strategy that never trades.
    g.bench_function("backtest_no_trade", |b| {
        let market = tape.market();
        let none = registry::info("no-trade")
            .expect("no-trade")
            .params
            .defaults();
        b.iter(|| {
            let mut s = registry::build("no-trade", &market, &exec.env, &none).expect("build");
            let r = dexlab_evolve::backtest::run(
                &tape,
                &market,
                0..tape.blocks.len(),
                s.as_mut(),
                &exec,
                false,
            );
            std::hint::black_box(r.metrics.trades)
        })
    });
    g.finish();

    let (arb_tape, arb_exec) = match std::env::var_os("DEXLAB_BENCH_DATA") {
        Some(dir) => {
            let t = Tape::load(Path::new(&dir)).expect("DEXLAB_BENCH_DATA is a dataset");
            let e = ExperimentConfig::default()
                .backtest
                .resolve(&t, 1)
                .expect("resolve");
            (t, e)
        }
        None => (base.clone(), exec.clone()),
    };
    let market = arb_tape.market();
    let params = registry::info("cross-venue-arb")
        .expect("arb")
        .params
        .defaults();
    let probe = {
        let mut s =
            registry::build("cross-venue-arb", &market, &arb_exec.env, &params).expect("build");
        dexlab_evolve::backtest::run(
            &arb_tape,
            &market,
            0..arb_tape.blocks.len(),
            s.as_mut(),
            &arb_exec,
            false,
        )
    };
    eprintln!(
        "arb tape: {} events in {} blocks, {} bundles ({} filled)",
        arb_tape.events.len(),
        arb_tape.blocks.len(),
        probe.metrics.trades,
        probe.metrics.filled
    );
    let mut g = c.benchmark_group("strategy");
    g.throughput(Throughput::Elements(arb_tape.events.len() as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.bench_function("cross_venue_arb_exact_sizing", |b| {
        b.iter(|| {
            let mut s =
                registry::build("cross-venue-arb", &market, &arb_exec.env, &params).expect("build");
            let r = dexlab_evolve::backtest::run(
                &arb_tape,
                &market,
                0..arb_tape.blocks.len(),
                s.as_mut(),
                &arb_exec,
                false,
            );
            std::hint::black_box(r.metrics.trades)
        })
    });
    g.finish();

    // GA fitness: one generation's worth of distinct genomes on the untiled sample.
    let space = registry::info("price-reversion").expect("rev").params;
    let genomes = initial_population(&space, 32, 9, 0);
    let start = base.market();
    let ctx = EvalCtx {
        tape: &base,
        start: &start,
        from: 0,
        window: 0..base.blocks.len(),
        strategy: "price-reversion",
        space: &space,
        exec: &exec,
        objective: cfg.ga.objective,
        min_trades: 1,
        max_drawdown: 0.5,
    };
    let mut g = c.benchmark_group("ga_evaluations");
    g.throughput(Throughput::Elements(genomes.len() as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        g.bench_function(format!("threads_{threads}"), |b| {
            b.iter(|| {
                pool.install(|| {
                    use rayon::prelude::*;
                    let f: Vec<i64> = genomes
                        .par_iter()
                        .map(|g| ctx.evaluate(g).fitness)
                        .collect();
                    std::hint::black_box(f)
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches_group, benches);
criterion_main!(benches_group);
