//! The genetic optimiser and walk-forward: reproducible by seed, independent of the thread count,
//! resumable after an interruption, and always reported next to its baselines.

use std::panic::{AssertUnwindSafe, catch_unwind};

use dexlab_evolve::config::ExperimentConfig;
use dexlab_evolve::walkforward::{FoldResult, Progress, RunSpec, fold_windows, run_experiment};

use crate::support::*;

fn spec(strategy: &str, seed: u64) -> RunSpec {
    let mut config = ExperimentConfig::default();
    config.ga.population = 8;
    config.ga.generations = 3;
    config.walk_forward.folds = 2;
    config.backtest.capital = 100_000.0;
    // The sample is Ethereum mainnet: L1 gas, no OP-stack data fee.
    config.backtest.gas.op_stack = false;
    config.backtest.gas.default_base_fee_wei = 15_000_000_000;
    config.validate().unwrap();
    RunSpec {
        strategy: strategy.into(),
        config,
        seed,
        dataset_hash: sample_tape().dataset_hash.clone(),
        model: None,
        blocks: None,
    }
}

/// Equal JSON, or a failure that shows where they first differ (not both documents).
fn same(a: &impl serde::Serialize, b: &impl serde::Serialize, what: &str) {
    let (a, b) = (
        serde_json::to_string(a).unwrap(),
        serde_json::to_string(b).unwrap(),
    );
    if a != b {
        let i = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
        let ctx = |s: &str| s[i.saturating_sub(120)..(i + 120).min(s.len())].to_owned();
        panic!("{what}: differ at byte {i}:\n  {}\n  {}", ctx(&a), ctx(&b));
    }
}

fn run_with(threads: usize, spec: &RunSpec, dir: &std::path::Path) -> Vec<FoldResult> {
    let tape = sample_tape();
    let exec = spec.config.backtest.resolve(tape, spec.seed).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        run_experiment(
            tape,
            spec,
            &exec,
            &dir.join("checkpoint.json"),
            serde_json::json!({}),
            &mut |_| {},
        )
        .unwrap()
        .0
    })
}

#[test]
fn the_result_depends_on_the_seed_not_on_the_thread_count() {
    let s = spec("price-reversion", 11);
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let one = run_with(1, &s, a.path());
    let two = run_with(2, &s, b.path());
    same(&one, &two, "1 vs 2 threads");
    let other = run_with(2, &spec("price-reversion", 12), c.path());
    assert_ne!(
        serde_json::to_string(&one).unwrap(),
        serde_json::to_string(&other).unwrap(),
        "another seed explores other parameters"
    );
    // Every fold reports the GA next to the three baselines, in and out of sample.
    for f in &one {
        let kinds: Vec<&str> = f.runs.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds, ["ga", "random_search", "default", "no_trade"]);
        assert_eq!(f.generations.len(), 4, "generations 0..=3");
        let ga = f.run(dexlab_types::RunKind::Ga).unwrap();
        let default = f.run(dexlab_types::RunKind::Default).unwrap();
        // The defaults are in the initial population and the best ever is kept.
        assert!(
            ga.train_objective >= default.train_objective - 1e-9,
            "{} < {}",
            ga.train_objective,
            default.train_objective
        );
        let nt = f.run(dexlab_types::RunKind::NoTrade).unwrap();
        assert_eq!((nt.test_metrics.trades, nt.test_objective), (0, 0.0));
        assert!(f.train_blocks.1 < f.test_blocks.0, "test follows train");
    }
}

#[test]
fn an_interrupted_run_resumes_to_the_same_result() {
    let s = spec("price-reversion", 5);
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = run_with(2, &s, fresh_dir.path());

    let dir = tempfile::tempdir().unwrap();
    let tape = sample_tape();
    let exec = s.config.backtest.resolve(tape, s.seed).unwrap();
    let ck = dir.path().join("checkpoint.json");
    // Interrupt in the middle of the second fold's optimisation.
    let mut seen = 0;
    let interrupted = catch_unwind(AssertUnwindSafe(|| {
        run_experiment(
            tape,
            &s,
            &exec,
            &ck,
            serde_json::json!({"id": 1}),
            &mut |p| {
                if let Progress::Generation { fold: 1, .. } = p {
                    seen += 1;
                    if seen == 2 {
                        panic!("simulated kill");
                    }
                }
            },
        )
    }));
    assert!(interrupted.is_err());
    let text = std::fs::read_to_string(&ck).unwrap();
    assert!(
        text.contains("\"folds_done\":[{"),
        "fold 0 was checkpointed"
    );
    let (resumed, tag) = run_experiment(
        tape,
        &s,
        &exec,
        &ck,
        serde_json::json!({"id": 2}),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(
        tag,
        serde_json::json!({"id": 1}),
        "the caller's tag survives the resume"
    );
    same(&fresh, &resumed, "fresh vs resumed");

    // A different config cannot resume someone else's checkpoint.
    let mut other = s.clone();
    other.config.ga.population = 10;
    let err =
        run_experiment(tape, &other, &exec, &ck, serde_json::json!({}), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("different run"), "{err}");
}

#[test]
fn fold_windows_tile_the_data_in_order() {
    let w = fold_windows(100, 3, false).unwrap();
    assert_eq!(w.len(), 3);
    for (i, (train, test)) in w.iter().enumerate() {
        assert_eq!(train.end, test.start);
        assert!(!train.is_empty() && !test.is_empty());
        if i > 0 {
            assert_eq!(
                train.start,
                w[i - 1].1.start,
                "rolling: train on the previous test chunk"
            );
        }
    }
    assert_eq!(w.last().unwrap().1.end, 100);
    let anchored = fold_windows(100, 3, true).unwrap();
    assert!(anchored.iter().all(|(t, _)| t.start == 0));
    assert!(fold_windows(5, 3, false).is_err());
}
