//! Training cannot learn from the future: a `label_…` column is refused as a feature, and every
//! label's embargo is its real look-ahead in blocks (the arbitrage label's is the latency).

use dexlab_models::artifact::Artifact;
use dexlab_models::{ModelError, ModelKind, Task, train};

use crate::support::{FAST_TOML, REG_TARGET, fast_options, synthetic_dir, write_synthetic_as};

#[test]
fn a_label_column_as_a_feature_is_refused_with_its_name() {
    let out = tempfile::tempdir().unwrap();
    let cfg = out.path().join("leaky.toml");
    std::fs::write(
        &cfg,
        format!("{FAST_TOML}features = [\"f0\", \"label_up__syn\", \"f1\"]\n"),
    )
    .unwrap();
    let mut opts = fast_options(
        synthetic_dir(),
        &out.path().join("m"),
        ModelKind::Linear,
        Task::Regression,
    );
    opts.config = Some(cfg);
    opts.target = Some(REG_TARGET.into());
    opts.epochs = 1;
    let err = train(&opts).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, ModelError::Config { key, .. } if key == "features")
            && text.contains("label columns cannot be features")
            && text.contains("`label_up__syn`")
            && !text.contains("`f0`"),
        "{text}"
    );
    assert!(!out.path().join("m").exists());
}

/// A features folder as `dexlab features build` wrote it before labels recorded their look-ahead:
/// only the config says how far the arbitrage label looks (`latency_blocks`).
#[test]
fn the_arbitrage_label_is_embargoed_by_its_latency() {
    const ARB: &str = "label_arb_profitable__syn_a__syn_b";
    let dir = tempfile::tempdir().unwrap();
    let feat = dir.path().join("features");
    write_synthetic_as(
        &feat,
        600,
        5,
        ARB,
        r#"{"input_hash": "synthetic-arb", "config": {"latency_blocks": 3}}"#,
    );
    let mut opts = fast_options(
        &feat,
        &dir.path().join("m"),
        ModelKind::Linear,
        Task::Classification,
    );
    opts.target = Some(ARB.into());
    opts.epochs = 1;
    let r = train(&opts).unwrap();
    let art = Artifact::read(&r.model_dir).unwrap();
    assert_eq!(art.dataset.embargo, 3, "the label reads 3 blocks ahead");
    assert_eq!(r.rows.embargoed, 6, "3 before valid and 3 before test");
    assert!(art.dataset.valid_blocks.0 > art.dataset.train_blocks.1 + 3);
    assert!(art.dataset.test_blocks.0 > art.dataset.valid_blocks.1 + 3);
    // dataset.json records the look-ahead, which backtests of the model start after.
    let ds: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.model_dir.join("dataset.json")).unwrap())
            .unwrap();
    assert_eq!(ds["lookahead_blocks"], 3, "{ds}");

    // An explicit embargo shorter than the look-ahead is refused, naming the key.
    let short = dir.path().join("short.toml");
    std::fs::write(&short, format!("{FAST_TOML}embargo = 1\n")).unwrap();
    opts.config = Some(short);
    opts.out_dir = dir.path().join("m2");
    let err = train(&opts).unwrap_err().to_string();
    assert!(
        err.contains("key `embargo`") && err.contains("look-ahead") && err.contains(ARB),
        "{err}"
    );

    // Without the config nothing says how far it looks: refused rather than embargo 0.
    std::fs::write(
        feat.join("manifest.json"),
        r#"{"input_hash": "synthetic-arb"}"#,
    )
    .unwrap();
    opts.config = None;
    let err = train(&opts).unwrap_err().to_string();
    assert!(err.contains("looks ahead is unknown"), "{err}");
}
