//! Resident memory across GA generations on the real sample: it should stay flat (the fitness
//! cache keeps only the current population, generations are streamed to the caller).
//!
//! `cargo run --release -p dexlab-evolve --example ga_memory -- [GENERATIONS] [POPULATION]`

use std::path::Path;

use dexlab_evolve::config::ExperimentConfig;
use dexlab_evolve::optimise::{EvalCtx, Evaluator, GaState, optimise};
use dexlab_evolve::tape::Tape;
use dexlab_strategy::registry;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let generations = args.first().copied().unwrap_or(60);
    let population = args.get(1).copied().unwrap_or(32);
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
    let mut cfg = ExperimentConfig::default();
    cfg.ga.population = population;
    cfg.ga.generations = generations;
    cfg.backtest.gas.op_stack = false;
    cfg.backtest.gas.default_base_fee_wei = 15_000_000_000;
    let exec = cfg.backtest.resolve(&tape, 1).expect("resolve");
    let space = registry::info("price-reversion").expect("strategy").params;
    let start = tape.market();
    let ctx = EvalCtx {
        tape: &tape,
        start: &start,
        from: 0,
        window: 0..tape.blocks.len(),
        strategy: "price-reversion",
        space: &space,
        exec: &exec,
        objective: cfg.ga.objective,
        min_trades: 1,
        max_drawdown: 0.5,
    };
    let ev = Evaluator::new(&ctx);
    let mut state = GaState::new(&space, &cfg.ga, 1, 0);
    println!("generation,rss_kib,evaluations,best");
    optimise(&ev, &cfg.ga, 1, 0, &mut state, &mut |st, _| {
        let s = st.history.last().expect("a generation");
        println!(
            "{},{},{},{:.6}",
            s.generation,
            rss_kib(),
            s.evaluations,
            s.best.unwrap_or(f64::NAN)
        );
    })
    .expect("the optimiser runs");
}
