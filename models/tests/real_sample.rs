//! The real USDC/WETH sample end to end. It may show no edge over the baselines: the test is
//! that everything runs, is finite, and carries its provenance.

use dexlab_models::artifact::Artifact;
use dexlab_models::{FeatureTable, ModelKind, Predictor, Task, train};

use crate::support::sample_features;

#[test]
fn real_sample_regression_and_classification() {
    let feat = sample_features();
    let out = tempfile::tempdir().unwrap();
    let mut opts = dexlab_models::TrainOptions::new(
        feat,
        out.path().join("reg"),
        ModelKind::Mlp,
        Task::Regression,
    );
    opts.epochs = 4;
    opts.seed = 1;
    let r = train(&opts).unwrap();
    assert!(r.target.starts_with("label_fwd_ret_1__"), "{}", r.target);
    assert!(r.rows.dropped() > 0, "warm-up rows have undefined features");
    assert!(r.test.rows > 100, "{:?}", r.rows);
    assert!(r.test.model.is_finite(), "{:?}", r.test.model);
    for b in ["zero", "train_mean", "persistence"] {
        let m = r.test.baseline(b).unwrap_or_else(|| panic!("baseline {b}"));
        assert!(m.is_finite(), "{b}: {m:?}");
    }
    let art = Artifact::read(&r.model_dir).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(feat.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        art.dataset.dataset_hash.as_deref(),
        manifest["input_hash"].as_str()
    );
    assert!(
        art.metrics
            .curve
            .iter()
            .all(|e| e.train_loss.is_finite() && e.valid_loss.is_finite())
    );

    // A live row through the predictor.
    let table = FeatureTable::read(&feat.join("features.parquet")).unwrap();
    // The sample has no base fees: those columns are left out, and the predictor refuses them.
    assert_eq!(r.excluded_features, ["base_fee_wei", "gas_cost_bps"]);
    let all = table.default_features();
    let err = Predictor::load(&r.model_dir, &all).unwrap_err().to_string();
    assert!(
        err.contains("extra columns [`base_fee_wei`, `gas_cost_bps`]"),
        "{err}"
    );
    let features: Vec<String> = all
        .into_iter()
        .filter(|f| !r.excluded_features.contains(f))
        .collect();
    assert_eq!(features.len(), r.features);
    let p = Predictor::load(&r.model_dir, &features).unwrap();
    let last = table.rows() - 1;
    let row: Vec<f64> = features
        .iter()
        .map(|f| table.column(f).unwrap()[last])
        .collect();
    assert!(p.predict(&row).unwrap().is_finite());

    // The sample has no base fees, so the arbitrage label (which needs the gas cost) is null
    // everywhere: classification has no default target, and says why.
    let opts = dexlab_models::TrainOptions::new(
        feat,
        out.path().join("clf"),
        ModelKind::Linear,
        Task::Classification,
    );
    let err = train(&opts).unwrap_err().to_string();
    assert!(err.contains("no label column for classification"), "{err}");
    assert!(
        err.contains("entirely null/NaN: [label_arb_profitable__"),
        "{err}"
    );
    assert!(!out.path().join("clf").exists());
}
