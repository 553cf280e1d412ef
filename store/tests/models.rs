//! The model registry: rows come back as registered, a name and a directory each belong to one
//! model, registering the same model again is a no-op, and every clash says who holds what.

use dexlab_store::{NewModel, StoreError};
use dexlab_store::{RegisteredKind, RegisteredTask};
use serde_json::json;

use crate::support::{TestDb, everything_printed};

fn model(name: &str, dir: &str, created_at: i64) -> NewModel {
    NewModel {
        name: name.to_owned(),
        kind: RegisteredKind::Model(dexlab_types::ModelKind::Mlp),
        task: RegisteredTask::Regression,
        target: "label_fwd_ret_1__uniswap_v3_usdc_weth_500".to_owned(),
        dir: dir.to_owned(),
        content_hash: format!("{:064x}", created_at),
        features: vec![
            "ret_1__a".into(),
            "vol_20__a".into(),
            "spread_bps__a__b".into(),
        ],
        window: 8,
        seed: u64::MAX,
        backend: "flex".to_owned(),
        dataset_hash: Some("9f86d081884c7d65".to_owned()),
        git_commit: "0bd467e".to_owned(),
        config: json!({"model": {"hidden": [32, 16]}, "hyper": {"lr": 0.005}}),
        dataset: json!({"rows": {"train": 700, "valid": 150, "test": 150}, "test_blocks": [1, 2]}),
        training: json!({"epochs_run": 4, "best_epoch": 3, "stopped_early": false}),
        metrics: json!({
            "rows": 150,
            "model": {"n": 150, "mse": 0.1 + 0.2, "mae": -0.0, "directional_accuracy": null},
            "baselines": [{"name": "zero", "metrics": {"n": 150, "mse": 1e-300}}],
        }),
        train_seconds: Some(0.1 + 0.2),
        created_at,
    }
}

async fn scenario(db: TestDb) -> anyhow::Result<()> {
    let store = &db.store;
    assert!(store.list_models().await?.is_empty());
    assert_eq!(store.model_by_name_or_id("lin").await?, None);
    assert_eq!(store.model_by_name_or_id("1").await?, None);

    let lin = model("lin", "/models/lin", 100);
    let lin_id = store.register_model(&lin).await?;
    // The same model again (a rerun of a deterministic training): same id, nothing changes.
    assert_eq!(store.register_model(&lin).await?, lin_id);
    // Two identical registrations at once: both succeed with one row.
    let gru = NewModel {
        kind: RegisteredKind::Model(dexlab_types::ModelKind::Gru),
        dataset_hash: None,
        train_seconds: None,
        ..model("gru-w8", "/models/gru", 200)
    };
    let (a, b) = tokio::join!(store.register_model(&gru), store.register_model(&gru));
    let gru_id = a?;
    assert_eq!(b?, gru_id);
    assert_ne!(gru_id, lin_id);

    // Everything comes back as registered, bit for bit, NULLs included.
    let got = store
        .model_by_name_or_id("lin")
        .await?
        .expect("lin by name");
    assert_eq!((got.id, &got.model), (lin_id, &lin));
    assert_eq!(
        got.model.train_seconds.map(f64::to_bits),
        Some((0.1f64 + 0.2).to_bits())
    );
    let mae = got.model.metrics["model"]["mae"].as_f64().unwrap();
    assert!(mae == 0.0 && mae.is_sign_negative(), "-0.0 survives: {mae}");
    let by_id = store
        .model_by_name_or_id(&format!(" {gru_id} "))
        .await?
        .expect("gru by id");
    assert_eq!(by_id.model, gru);
    assert_eq!(by_id.model.dataset_hash, None);
    assert_eq!(by_id.model.train_seconds, None);
    assert_eq!(store.model_by_name_or_id("999999").await?, None);
    assert_eq!(
        store.model_by_name_or_id("99999999999999999999999").await?,
        None
    );
    assert_eq!(store.model_by_name_or_id("nope").await?, None);

    // The name with other content: refused, and the row is untouched.
    let retrained = NewModel {
        content_hash: "ab".repeat(32),
        seed: 2,
        ..lin.clone()
    };
    let err = store.register_model(&retrained).await.unwrap_err();
    let printed = everything_printed(&err);
    assert!(
        matches!(err, StoreError::ModelNameTaken { id, .. } if id == lin_id),
        "{printed}"
    );
    assert!(
        printed.contains("`lin`")
            && printed.contains(&format!("model {lin_id}"))
            && printed.contains("/models/lin")
            && printed.contains("content differs")
            && printed.contains("another name"),
        "{printed}"
    );
    // The name with the same content in another directory: refused too.
    let moved = NewModel {
        dir: "/elsewhere/lin".into(),
        ..lin.clone()
    };
    let err = store.register_model(&moved).await.unwrap_err();
    let printed = everything_printed(&err);
    assert!(
        matches!(err, StoreError::ModelNameTaken { .. }),
        "{printed}"
    );
    assert!(printed.contains("/elsewhere/lin"), "{printed}");
    // Another name for a registered directory: refused, naming the model there.
    let alias = NewModel {
        name: "lin-again".into(),
        ..lin.clone()
    };
    let err = store.register_model(&alias).await.unwrap_err();
    let printed = everything_printed(&err);
    assert!(matches!(err, StoreError::ModelDirTaken { .. }), "{printed}");
    assert!(
        printed.contains("/models/lin") && printed.contains("`lin`"),
        "{printed}"
    );

    // Names that are no names, and a non-finite duration: refused before anything is written.
    for bad in ["", "42", " lin2"] {
        let err = store
            .register_model(&model(bad, "/models/bad", 1))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
    }
    let nan = NewModel {
        train_seconds: Some(f64::NAN),
        ..model("nan", "/models/nan", 1)
    };
    let err = store.register_model(&nan).await.unwrap_err();
    assert!(matches!(err, StoreError::NonFinite { .. }), "{err}");

    // After the failures the store still takes new models (no transaction left aborted).
    let old = store
        .register_model(&model("backdated", "/models/old", 50))
        .await?;
    let listed: Vec<(i64, String)> = store
        .list_models()
        .await?
        .into_iter()
        .map(|m| (m.id, m.model.name))
        .collect();
    assert_eq!(
        listed,
        vec![
            (gru_id, "gru-w8".to_owned()),
            (lin_id, "lin".to_owned()),
            (old, "backdated".to_owned()),
        ],
        "newest first, by created_at"
    );
    Ok(())
}

on_both_backends!(scenario);

#[test]
fn the_content_hash_covers_the_model_but_not_its_plots_or_git_commit() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("model.bpk", "weights");
    write("config.json", r#"{"seed": 1, "git_commit": "aaa"}"#);
    let h = || dexlab_store::content_hash(dir.path()).unwrap();
    let first = h();
    write("config.json", r#"{"seed": 1, "git_commit": "bbb"}"#);
    write("learning_curve.png", "pixels");
    assert_eq!(h(), first, "another commit and a plot are the same model");
    write("config.json", r#"{"seed": 2, "git_commit": "bbb"}"#);
    assert_ne!(h(), first, "another config is not");
    write("config.json", r#"{"seed": 1, "git_commit": "bbb"}"#);
    write("model.bpk", "weightz");
    assert_ne!(h(), first, "other weights are not");
}
