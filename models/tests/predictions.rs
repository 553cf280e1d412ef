//! `predictions.csv` holds the test split the metrics were computed from: recomputing the
//! metrics from the file gives `metrics.json`'s numbers.

use std::path::Path;

use dexlab_models::{ModelKind, Task, train};
use serde_json::Value;

use crate::support::{fast_options, synthetic_dir};

struct Row {
    block: i64,
    realised: f64,
    predicted: f64,
}

/// Parsed by hand rather than with the crate's own code, so the file format itself is tested.
fn read_predictions(dir: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(dir.join("predictions.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("block,realised,predicted"));
    lines
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), 3, "{line}");
            Row {
                block: f[0].parse().unwrap(),
                realised: f[1].parse().unwrap(),
                predicted: f[2].parse().unwrap(),
            }
        })
        .collect()
}

fn metrics(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1e-300)
}

/// The rows match the test split's count and blocks, in time order.
fn check_rows(dir: &Path, rows: &[Row], test: &Value) {
    assert_eq!(rows.len() as u64, test["rows"].as_u64().unwrap());
    assert_eq!(rows[0].block, test["first_block"].as_i64().unwrap());
    assert_eq!(
        rows[rows.len() - 1].block,
        test["last_block"].as_i64().unwrap()
    );
    assert!(rows.windows(2).all(|w| w[0].block < w[1].block));
    let dataset: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("dataset.json")).unwrap()).unwrap();
    assert_eq!(dataset["rows"]["test"], test["rows"]);
}

#[test]
fn regression_predictions_reproduce_the_test_mse() {
    for kind in [ModelKind::Mlp, ModelKind::Gru] {
        let out = tempfile::tempdir().unwrap();
        let mut opts = fast_options(
            synthetic_dir(),
            &out.path().join("m"),
            kind,
            Task::Regression,
        );
        opts.epochs = 3;
        let r = train(&opts).unwrap();
        let rows = read_predictions(&r.model_dir);
        let m = metrics(&r.model_dir);
        let test = &m["test"];
        check_rows(&r.model_dir, &rows, test);
        let n = rows.len() as f64;
        let mse = rows
            .iter()
            .map(|r| (r.predicted - r.realised).powi(2))
            .sum::<f64>()
            / n;
        let mae = rows
            .iter()
            .map(|r| (r.predicted - r.realised).abs())
            .sum::<f64>()
            / n;
        let want = test["model"]["mse"].as_f64().unwrap();
        assert!(
            close(mse, want),
            "{kind}: MSE from the CSV {mse}, metrics.json {want}"
        );
        let want = test["model"]["mae"].as_f64().unwrap();
        assert!(
            close(mae, want),
            "{kind}: MAE from the CSV {mae}, metrics.json {want}"
        );
        // And the report agrees with the file.
        assert!(close(mse, r.test.model.loss()));
        // The zero baseline is the realised column alone.
        let zero = rows.iter().map(|r| r.realised.powi(2)).sum::<f64>() / n;
        let want = r.test.baseline("zero").unwrap().loss();
        assert!(close(zero, want), "{kind}: zero MSE {zero} vs {want}");
    }
}

#[test]
fn classification_predictions_reproduce_the_test_log_loss() {
    let out = tempfile::tempdir().unwrap();
    let mut opts = fast_options(
        synthetic_dir(),
        &out.path().join("m"),
        ModelKind::Mlp,
        Task::Classification,
    );
    opts.epochs = 3;
    let r = train(&opts).unwrap();
    let rows = read_predictions(&r.model_dir);
    let test = &metrics(&r.model_dir)["test"];
    check_rows(&r.model_dir, &rows, test);
    assert!(rows.iter().all(|r| r.realised == 0.0 || r.realised == 1.0));
    assert!(rows.iter().all(|r| (0.0..=1.0).contains(&r.predicted)));
    let n = rows.len() as f64;
    let log_loss = -rows
        .iter()
        .map(|r| {
            let p = r.predicted.clamp(1e-7, 1.0 - 1e-7);
            if r.realised == 1.0 {
                p.ln()
            } else {
                (1.0 - p).ln()
            }
        })
        .sum::<f64>()
        / n;
    let accuracy = rows
        .iter()
        .filter(|r| (r.predicted >= 0.5) == (r.realised == 1.0))
        .count() as f64
        / n;
    let want = test["model"]["log_loss"].as_f64().unwrap();
    assert!(close(log_loss, want), "log loss {log_loss} vs {want}");
    assert_eq!(accuracy, test["model"]["accuracy"].as_f64().unwrap());
    let counts: Vec<u64> = test["model"]["calibration"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), rows.len() as u64);
}
