//! Each model learns the synthetic signal and beats the naive baseline on the test split.

use dexlab_models::{ModelKind, Task, TrainReport, train};

use crate::support::{fast_options, synthetic_dir};

fn run(kind: ModelKind, task: Task) -> (tempfile::TempDir, TrainReport) {
    let out = tempfile::tempdir().unwrap();
    let opts = fast_options(synthetic_dir(), &out.path().join("model"), kind, task);
    let report = train(&opts).unwrap();
    (out, report)
}

fn assert_beats_zero(kind: ModelKind) {
    let (_out, r) = run(kind, Task::Regression);
    let curve = std::fs::read_to_string(r.model_dir.join("metrics.json")).unwrap();
    println!("{kind}: {:?}\n{curve}", r.rows);
    let model = r.test.model.regression().unwrap();
    let zero = r.test.baseline("zero").unwrap().regression().unwrap();
    assert!(r.test.baseline("persistence").is_some());
    assert!(
        model.mse < 0.6 * zero.mse,
        "{kind}: test MSE {} vs zero {} ({} epochs, best {})",
        model.mse,
        zero.mse,
        r.epochs_run,
        r.best_epoch
    );
    assert!(
        model.directional_accuracy.unwrap() > 0.7,
        "{kind}: {model:?}"
    );
    assert_eq!(zero.directional_accuracy, Some(0.5));
    // The last row has no label; the first has a NaN feature (and window models need W rows).
    assert_eq!(r.rows.dropped_target, 1);
    assert_eq!(r.window, if kind.is_sequence() { 8 } else { 1 });
    assert_eq!(r.rows.dropped_features, r.window);
    assert_eq!(
        r.rows.embargoed, 2,
        "horizon 1 → one row before valid and one before test"
    );
    assert_eq!(
        r.rows.train + r.rows.valid + r.rows.test + r.rows.embargoed + r.rows.dropped(),
        r.rows.total
    );
    assert!(r.epochs_run >= r.best_epoch && r.best_epoch >= 1);
    for f in [
        "model.bpk",
        "config.json",
        "schema.json",
        "normalizer.json",
        "metrics.json",
        "dataset.json",
        "predictions.csv",
    ] {
        assert!(r.model_dir.join(f).is_file(), "{f}");
    }
}

#[test]
fn linear_regression_beats_zero() {
    assert_beats_zero(ModelKind::Linear);
}

#[test]
fn mlp_regression_beats_zero() {
    assert_beats_zero(ModelKind::Mlp);
}

#[test]
fn gru_regression_beats_zero() {
    assert_beats_zero(ModelKind::Gru);
}

#[test]
fn transformer_regression_beats_zero() {
    assert_beats_zero(ModelKind::Transformer);
}

#[test]
fn mlp_classification_beats_majority_next_to_logistic() {
    let (_out, r) = run(ModelKind::Mlp, Task::Classification);
    let model = r.test.model.classification().unwrap();
    let majority = r
        .test
        .baseline("majority")
        .unwrap()
        .classification()
        .unwrap();
    let logistic = r
        .test
        .baseline("logistic")
        .unwrap()
        .classification()
        .unwrap();
    assert!(
        model.log_loss < 0.7 * majority.log_loss,
        "log loss {} vs majority {}",
        model.log_loss,
        majority.log_loss
    );
    assert!(
        model.accuracy > majority.accuracy + 0.1,
        "{} vs {}",
        model.accuracy,
        majority.accuracy
    );
    assert!(model.auc.unwrap() > 0.85, "{:?}", model.auc);
    assert_eq!(majority.auc, Some(0.5));
    // The signal is linear in the logit: logistic regression does as well.
    assert!(logistic.auc.unwrap() > 0.85, "{:?}", logistic.auc);
    assert_eq!(model.calibration.len(), 10);
    assert_eq!(
        model.calibration.iter().map(|b| b.count).sum::<usize>(),
        r.test.rows
    );
}
