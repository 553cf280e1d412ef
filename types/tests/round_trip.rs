//! Every type of the crate round-trips through serde, and every name keeps its one spelling
//! (what the store's text columns already hold).

use std::fmt::Debug;

use dexlab_types::backtest::Metrics;
use dexlab_types::predict::{
    Baseline, CalibrationBin, ClassificationMetrics, Metrics as TestMetrics, RegressionMetrics,
    TestReport,
};
use dexlab_types::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(v: &T) -> serde_json::Value {
    let json = serde_json::to_value(v).unwrap();
    let back: T = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(&back, v, "{json}");
    let text = serde_json::to_string(v).unwrap();
    assert_eq!(&serde_json::from_str::<T>(&text).unwrap(), v, "{text}");
    json
}

/// Each variant is written as its spelling, read back, and parsed from it in any case; any
/// other word is refused naming what was expected.
fn names<T>(all: &[T], expected: &[&str])
where
    T: Serialize + DeserializeOwned + PartialEq + Debug + Copy + std::fmt::Display,
    T: std::str::FromStr<Err = ParseError>,
{
    let written: Vec<String> = all
        .iter()
        .map(|v| round_trip(v).as_str().unwrap().to_owned())
        .collect();
    assert_eq!(written, expected);
    for (v, name) in all.iter().zip(expected) {
        assert_eq!(v.to_string(), *name);
        assert_eq!(&name.parse::<T>().unwrap(), v);
        assert_eq!(&name.to_uppercase().parse::<T>().unwrap(), v);
    }
    let e = "nonsense".parse::<T>().unwrap_err();
    assert!(e.to_string().contains(&expected.join("|")), "{e}");
    assert!(serde_json::from_str::<T>("\"nonsense\"").is_err());
    assert!(serde_json::from_str::<T>("3").is_err());
}

#[test]
fn names_keep_the_spellings_the_store_holds() {
    names(
        &ExperimentStatus::ALL,
        &["running", "done", "failed", "interrupted"],
    );
    names(
        &RunKind::ALL,
        &["ga", "random_search", "default", "no_trade"],
    );
    names(&ModelKind::ALL, &["linear", "mlp", "gru", "transformer"]);
    names(&Task::ALL, &["regression", "classification"]);
    names(&AgentKind::ALL, &["dqn", "ppo"]);
    names(&SessionMode::ALL, &["paper", "live"]);
    names(&SessionStatus::ALL, &["running", "stopped", "failed"]);
    names(
        &RegisteredTask::ALL,
        &["regression", "classification", "rl"],
    );
    let kinds: Vec<RegisteredKind> = ModelKind::ALL
        .into_iter()
        .map(RegisteredKind::from)
        .chain(AgentKind::ALL.into_iter().map(RegisteredKind::from))
        .collect();
    names(&kinds, RegisteredKind::NAMES);
}

#[test]
fn aliases_parse_but_are_never_written() {
    assert_eq!("reg".parse::<Task>().unwrap(), Task::Regression);
    assert_eq!("CLF".parse::<Task>().unwrap(), Task::Classification);
    assert!(serde_json::from_str::<Task>("\"reg\"").is_err());
    assert_eq!(
        RegisteredTask::from(Task::Classification),
        RegisteredTask::Classification
    );
    let e = "lstm".parse::<ModelKind>().unwrap_err().to_string();
    assert_eq!(
        e,
        "unknown model `lstm`, expected linear|mlp|gru|transformer"
    );
}

#[test]
fn backtest_metrics_and_equity_round_trip() {
    let m = Metrics {
        initial_equity: 10_000.0,
        final_equity: 10_000.125,
        net_pnl_quote: 0.125,
        net_pnl_usd: Some(0.125),
        return_pct: 1.25e-3,
        gas_spent_quote: 0.1 + 0.2,
        trades: 3,
        filled: 2,
        reverts: 1,
        rejected: 0,
        expired: 1,
        lost_to_competition: 1,
        hit_rate: 0.5,
        sharpe: -0.0,
        sortino: f64::MIN_POSITIVE,
        max_drawdown: 1.0 / 3.0,
        calmar: 7.0,
        turnover: 0.25,
        exposure: 0.75,
        periods: 9,
        span_secs: 18.0,
        close_cost_quote: 0.001,
        diverged_events: 4,
        failed_flows: 1,
        rival_fills: 2,
        warmup_blocks: 5,
        errors: 1,
        first_error: Some("no price".into()),
        queue_assumption: Some("last".into()),
    };
    let json = round_trip(&m);
    assert_eq!(
        serde_json::from_value::<Metrics>(json)
            .unwrap()
            .sharpe
            .to_bits(),
        (-0.0f64).to_bits()
    );
    round_trip(&Metrics::default());
    // Rows written before the later fields existed still read.
    let old = serde_json::json!({
        "initial_equity": 1.0, "final_equity": 1.0, "net_pnl_quote": 0.0, "net_pnl_usd": null,
        "return_pct": 0.0, "gas_spent_quote": 0.0, "trades": 0, "filled": 0, "reverts": 0,
        "rejected": 0, "lost_to_competition": 0, "hit_rate": 0.0, "sharpe": 0.0, "sortino": 0.0,
        "max_drawdown": 0.0, "calmar": 0.0, "turnover": 0.0, "exposure": 0.0, "periods": 0,
        "span_secs": 0.0
    });
    let m: Metrics = serde_json::from_value(old).unwrap();
    assert_eq!((m.errors, m.first_error), (0, None));
    round_trip(&vec![
        EquityPoint {
            block: 1,
            timestamp: 1_700_000_000,
            equity: 10_000.0,
        },
        EquityPoint {
            block: u64::MAX,
            timestamp: 0,
            equity: -0.5,
        },
    ]);
}

#[test]
fn test_reports_round_trip() {
    let regression = TestMetrics::Regression(RegressionMetrics {
        n: 10,
        mse: 0.25,
        mae: 0.5,
        directional_accuracy: None,
    });
    let classification = TestMetrics::Classification(ClassificationMetrics {
        n: 4,
        positive_rate: 0.25,
        accuracy: 0.75,
        auc: Some(0.5),
        log_loss: 0.693,
        calibration: vec![CalibrationBin {
            lo: 0.0,
            hi: 0.1,
            count: 0,
            mean_predicted: None,
            observed_rate: Some(0.0),
        }],
    });
    for model in [regression, classification] {
        let r = TestReport {
            rows: 10,
            first_block: -1,
            last_block: 12,
            model: model.clone(),
            baselines: vec![Baseline {
                name: "zero".into(),
                description: "predicts 0".into(),
                metrics: model,
            }],
        };
        round_trip(&r);
        assert!(r.baseline("zero").is_some());
    }
}
