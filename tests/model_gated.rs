//! A model trained by `dexlab train` drives `model-gated` in a backtest and in `dexlab evolve`,
//! through the same predictor the live engine will call, fed by online features that equal the
//! dataset the model was trained on.

use std::path::{Path, PathBuf};
use std::process::Command;

use dexlab_evolve::tape::apply;
use dexlab_models::FeatureTable;
use dexlab_models::scorer::ModelScorer;
use dexlab_strategy::{OnlineFeatures, Scorer};

use crate::online_features::sample_tape;
use crate::support::dexlab;

const TARGET: &str = "label_fwd_ret_5__uniswap_v3_usdc_weth_500";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn ok(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn fails(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(!o.status.success(), "{c:?} should fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The sample's dataset, its features and a small MLP on the online-computable columns.
pub(crate) fn trained(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let tape = sample_tape(dir);
    drop(tape);
    let data = dir.join("data");
    let features = dir.join("features");
    ok(dexlab()
        .args(["features", "build", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&features));
    let model = dir.join("gate-mlp");
    ok(dexlab()
        .args([
            "train",
            "--model",
            "mlp",
            "--task",
            "regression",
            "--seed",
            "1",
            "--epochs",
            "3",
            "--target",
            TARGET,
        ])
        .arg("--features")
        .arg(&features)
        .arg("--config")
        .arg(root().join("examples/train-gated.toml"))
        .arg("--out")
        .arg(&model)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("store.sqlite").display()),
        ));
    (data, features, model)
}

#[test]
fn a_trained_model_gates_trades_in_backtest_and_evolve() {
    let dir = tempfile::tempdir().unwrap();
    let (data, features, model) = trained(dir.path());
    // Training left its plots next to the weights.
    for f in [
        "learning_curve.png",
        "learning_curve.svg",
        "predicted_vs_realised.png",
        "predicted_vs_realised.svg",
        "predictions.csv",
    ] {
        assert!(
            std::fs::metadata(model.join(f)).is_ok_and(|m| m.len() > 100),
            "{f} missing or empty"
        );
    }

    // 1. The strategy's online scores equal the predictor on the dataset's rows.
    let scorer = ModelScorer::load(&model).unwrap();
    let cols = scorer.features().to_vec();
    let table = FeatureTable::read(&features.join("features.parquet")).unwrap();
    let tape = dexlab_evolve::tape::Tape::load(&data).unwrap();
    let mut online = OnlineFeatures::new(&tape.pools, &cols, scorer.window()).unwrap();
    let blocks = table.column("block_number").unwrap();
    let mut market = tape.market();
    let (mut scored, mut worst) = (0, 0.0f64);
    for (bi, b) in tape.blocks.iter().enumerate() {
        market.block = *b;
        for e in tape.events_of(bi) {
            apply(&mut market, e);
        }
        online.on_block(&market);
        let Some(r) = blocks.iter().position(|&x| x == b.number as f64) else {
            continue;
        };
        let row: Vec<f64> = cols.iter().map(|c| table.column(c).unwrap()[r]).collect();
        let (Some(w), true) = (online.window(), row.iter().all(|v| v.is_finite())) else {
            continue;
        };
        let from_dataset = scorer.predictor().predict(&row).unwrap();
        let from_online = scorer.score(&w).unwrap();
        worst = worst.max((from_dataset - from_online).abs() / from_dataset.abs().max(1e-9));
        scored += 1;
    }
    assert!(scored > 1_000, "{scored} rows scored");
    assert!(
        worst < 1e-3,
        "online and dataset predictions differ by {worst:.2e} (relative)"
    );

    // 2. A backtest, with thresholds that trade.
    let cfg = root().join("examples/evolve-mainnet.toml");
    let bt: serde_json::Value = serde_json::from_str(&ok(dexlab()
        .args([
            "backtest",
            "--strategy",
            "model-gated",
            "--json",
            "--params",
            r#"{"entry_bps": 0, "exit_bps": 0}"#,
        ])
        .arg("--data")
        .arg(&data)
        .arg("--model")
        .arg(&model)
        .arg("--config")
        .arg(&cfg)))
    .unwrap();
    let m = &bt["metrics"];
    assert!(
        m["trades"].as_u64().unwrap() > 0,
        "entering on any positive prediction trades: {m}"
    );
    assert_eq!(
        m["trades"].as_u64().unwrap(),
        bt["trades"].as_array().unwrap().len() as u64
    );

    // 3. The optimiser tunes the thresholds, next to the baselines, and records the model.
    let out = dir.path().join("exp");
    let v: serde_json::Value = serde_json::from_str(&ok(dexlab()
        .args([
            "evolve",
            "--strategy",
            "model-gated",
            "--seed",
            "2",
            "--population",
            "6",
            "--generations",
            "2",
            "--folds",
            "2",
            "--quiet",
            "--json",
        ])
        .arg("--data")
        .arg(&data)
        .arg("--model")
        .arg(&model)
        .arg("--config")
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("store.sqlite").display()),
        )))
    .unwrap();
    assert!(v["model"].as_str().unwrap().starts_with("gate-mlp@"), "{v}");
    for kind in ["ga", "default", "random_search", "no_trade"] {
        assert!(
            v["runs"][kind]["out_of_sample_net_pnl_quote"].is_number(),
            "{kind} missing: {v}"
        );
    }

    // 4. Promotion records the model the experiment ran with (by registry id and content hash);
    //    a retired model can no longer be promoted.
    let db = format!("sqlite://{}", dir.path().join("store.sqlite").display());
    let risk = root().join("examples/risk.toml");
    let promote = |name: &str| {
        dexlab()
            .args([
                "promote",
                "model-gated-seed2",
                "--force",
                "--json",
                "--name",
                name,
            ])
            .arg("--risk")
            .arg(&risk)
            .env("DATABASE_URL", &db)
            .output()
            .unwrap()
    };
    let o = promote("gated");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(d["model_name"], "gate-mlp", "{d}");
    assert_eq!(d["strategy"], "model-gated");
    let models: serde_json::Value = serde_json::from_str(&ok(dexlab()
        .args(["models", "show", "gate-mlp", "--json"])
        .env("DATABASE_URL", &db)))
    .unwrap();
    assert_eq!(d["model_hash"], models["model"]["content_hash"], "{models}");
    ok(dexlab()
        .args(["models", "retire", "gate-mlp", "--reason", "superseded"])
        .env("DATABASE_URL", &db));
    let o = promote("gated-again");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("retired") && e.contains("superseded"),
        "{e}"
    );

    // 5. Wrong combinations are refused with the reason.
    let e = fails(
        dexlab()
            .args(["backtest", "--strategy", "model-gated", "--data"])
            .arg(&data)
            .arg("--config")
            .arg(&cfg),
    );
    assert!(e.contains("needs a model"), "{e}");
    let e = fails(
        dexlab()
            .args(["backtest", "--strategy", "price-reversion", "--data"])
            .arg(&data)
            .arg("--model")
            .arg(&model),
    );
    assert!(e.contains("does not use a model"), "{e}");
}
