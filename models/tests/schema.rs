//! Reloading a model: the feature schema check and single-row prediction.

use dexlab_models::artifact::Artifact;
use dexlab_models::{FeatureTable, ModelError, ModelKind, Predictor, Task, train};

use crate::support::{FEATURES, fast_options, synthetic_dir};

#[test]
fn schema_mismatch_says_what_differs() {
    let out = tempfile::tempdir().unwrap();
    let mut opts = fast_options(
        synthetic_dir(),
        &out.path().join("m"),
        ModelKind::Linear,
        Task::Regression,
    );
    opts.epochs = 2;
    let r = train(&opts).unwrap();
    Predictor::load(&r.model_dir, &FEATURES).unwrap();
    let err = Predictor::load(&r.model_dir, &["f0", "f2", "f1", "g"]).unwrap_err();
    assert!(matches!(err, ModelError::SchemaMismatch { .. }));
    let text = err.to_string();
    for want in [
        "missing columns [`f3`]",
        "extra columns [`g`]",
        "`f1` expected at 1, given at 2",
        "`f2` expected at 2, given at 1",
    ] {
        assert!(text.contains(want), "{want:?} not in {text:?}");
    }
}

/// The predictor, fed raw rows, reproduces the test MSE the training run recorded: the weights,
/// the normaliser and the target scaling all survive the round trip (flat and window models).
#[test]
fn predictor_reproduces_the_recorded_test_metrics() {
    let table = FeatureTable::read(&synthetic_dir().join("features.parquet")).unwrap();
    let blocks = table.column("block_number").unwrap();
    let cols: Vec<&[f64]> = FEATURES.iter().map(|f| table.column(f).unwrap()).collect();
    let rows: Vec<Vec<f64>> = (0..table.rows())
        .map(|r| cols.iter().map(|c| c[r]).collect())
        .collect();
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
        let p = Predictor::load(&r.model_dir, &FEATURES).unwrap();
        let art = Artifact::read(&r.model_dir).unwrap();
        assert_eq!(art.dataset.dataset_hash.as_deref(), Some("synthetic-0001"));
        assert_eq!(art.config.git_commit.len(), 40, "run inside the repository");
        let w = p.schema().window;
        let y = table.column(&p.schema().target).unwrap();
        let (first, last) = art.dataset.test_blocks;
        let (mut se, mut n) = (0.0, 0);
        for t in 0..table.rows() {
            let b = blocks[t] as i64;
            if b < first || b > last || !y[t].is_finite() {
                continue;
            }
            let window: Vec<&[f64]> = rows[t + 1 - w..=t].iter().map(Vec::as_slice).collect();
            let pred = p.predict_window(&window).unwrap();
            if w == 1 {
                assert_eq!(pred, p.predict(&rows[t]).unwrap());
            }
            se += (pred - y[t]).powi(2);
            n += 1;
        }
        assert_eq!(n, r.test.rows, "{kind}");
        let mse = se / n as f64;
        let recorded = r.test.model.regression().unwrap().mse;
        assert!(
            (mse - recorded).abs() <= 1e-5 * recorded,
            "{kind}: {mse} vs {recorded}"
        );
        // Wrong shapes and non-finite values are errors rather than garbage.
        assert!(p.predict_window(&[&[1.0, 2.0]]).is_err());
        if w == 1 {
            let err = p
                .predict(&[1.0, f64::NAN, 0.0, 0.0])
                .unwrap_err()
                .to_string();
            assert!(err.contains("`f1`"), "{err}");
        } else {
            assert!(
                p.predict(&rows[10])
                    .unwrap_err()
                    .to_string()
                    .contains("predict_window")
            );
        }
    }
}
