//! Bad input to the optimiser and the backtest config ends in an error naming the key and the
//! value, never in a panic inside genevo or an optimisation over windows without events.

use alloy_primitives::U256;
use dexlab_evolve::config::{BacktestConfig, Crossover, ExperimentConfig};
use dexlab_evolve::tape::Tape;
use dexlab_evolve::walkforward::{RunSpec, run_experiment};
use dexlab_strategy::registry;

use crate::support::*;

const ARB: &str = "cross-venue-arb";

/// `blocks` blocks; both pools move in the blocks of `with_events` (alternating prices, so the
/// arbitrage has something to find), the others have a header only.
fn tape(blocks: usize, with_events: impl Fn(usize) -> bool) -> Tape {
    let updates: Vec<Vec<(u32, U256, U256)>> = (0..blocks)
        .map(|b| {
            if !with_events(b) {
                return Vec::new();
            }
            let (a, c) = if b % 2 == 0 {
                (2_000, 2_010)
            } else {
                (2_010, 2_000)
            };
            vec![
                (0, e6(a * 1_000), e18(1_000)),
                (1, e6(c * 1_000), e18(1_000)),
            ]
        })
        .collect();
    two_pool_tape(&updates)
}

fn spec(edit: impl FnOnce(&mut ExperimentConfig)) -> RunSpec {
    let mut config = ExperimentConfig::default();
    config.ga.population = 6;
    config.ga.generations = 1;
    config.walk_forward.folds = 2;
    edit(&mut config);
    config.validate().unwrap();
    RunSpec {
        strategy: ARB.into(),
        config,
        seed: 1,
        dataset_hash: "test".into(),
        model: None,
        blocks: None,
    }
}

fn run(tape: &Tape, spec: &RunSpec) -> dexlab_evolve::Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let exec = exec(e6(100_000), 0.0);
    run_experiment(
        tape,
        spec,
        &exec,
        &dir.path().join("checkpoint.json"),
        serde_json::json!({}),
        &mut |_| {},
    )
    .map(|_| ())
}

#[test]
fn the_smallest_population_genevo_takes_runs() {
    run(&tape(60, |_| true), &spec(|_| {})).unwrap();
}

/// genevo asserts `genes >= 2 * points` when it cuts a genome: a config asking for more cut points
/// than the strategy's genome allows is refused, naming the key and the gene count.
#[test]
fn multi_point_crossover_with_more_points_than_the_genome_allows_is_refused() {
    let genes = registry::info(ARB).unwrap().params.len();
    let points = genes / 2 + 1;
    let s = spec(|c| c.ga.crossover = Crossover::MultiPoint { points });
    let e = run(&tape(60, |_| true), &s).unwrap_err().to_string();
    assert!(
        e.contains(&format!("ga.crossover.points = {points}")),
        "{e}"
    );
    assert!(e.contains(&format!("{genes} genes")), "{e}");
    assert!(e.contains(&format!("at most {}", genes / 2)), "{e}");
    // The largest allowed number of points runs.
    let s = spec(|c| c.ga.crossover = Crossover::MultiPoint { points: genes / 2 });
    run(&tape(60, |_| true), &s).unwrap();
}

/// 60 blocks with headers but events in 2 of them: every window but one would replay nothing.
#[test]
fn events_in_two_blocks_are_too_few_for_the_walk_forward_windows() {
    let t = tape(60, |b| b == 10 || b == 11);
    let e = run(&t, &spec(|_| {})).unwrap_err().to_string();
    assert!(e.contains("2 blocks with events"), "{e}");
    assert!(e.contains("of 60 blocks"), "{e}");
    assert!(e.contains("2 walk-forward folds"), "{e}");
    assert!(e.contains("at least 6"), "{e}");
}

/// Enough blocks with events in total, but none in the last window: it is named.
#[test]
fn a_window_without_events_is_named() {
    let t = tape(60, |b| b < 40);
    let e = run(&t, &spec(|_| {})).unwrap_err().to_string();
    assert!(e.contains("no block with events"), "{e}");
    assert!(e.contains("test window of fold 2"), "{e}");
}

/// A capital that does not fit the quote token's integer amount, and decimals no ERC-20 amount
/// can carry, each get their own message (both used to be "not a positive amount").
#[test]
fn capital_too_large_and_impossible_decimals_are_told_apart() {
    let t = tape(10, |_| true);
    let big = BacktestConfig {
        capital: 1e300,
        ..BacktestConfig::default()
    };
    let e = big.resolve(&t, 1).unwrap_err().to_string();
    assert!(e.contains("backtest.capital = 1e300"), "{e}");
    assert!(e.contains("too large"), "{e}");
    assert!(e.contains("USDC") && e.contains("6 decimals"), "{e}");

    let mut odd = t.clone();
    odd.pools[0].decimals0 = 255;
    odd.pools[1].decimals0 = 255;
    let e = BacktestConfig::default()
        .resolve(&odd, 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("255 decimals"), "{e}");
    assert!(e.contains("at most 77"), "{e}");
    assert!(!e.contains("not a positive amount"), "{e}");

    let dust = BacktestConfig {
        capital: 1e-9,
        ..BacktestConfig::default()
    };
    let e = dust.resolve(&t, 1).unwrap_err().to_string();
    assert!(e.contains("rounds to 0"), "{e}");
}
