//! Promoted deployments and retired models: versions count up per name and link to the one they
//! replaced, rows come back as stored, a rollback restores the previous version's content as a
//! new version (and a second one goes further back), a retired model cannot be deployed or
//! retired again, and promotions of one name at once get distinct consecutive versions.

use dexlab_store::{
    DeploymentRow, NewDeployment, NewModel, RegisteredKind, RegisteredTask, Store, StoreError,
};
use serde_json::json;

use crate::support::{TestDb, everything_printed, experiment};

/// A promotion of `strategy` with parameter `z`: JSON with the floats that a lossy store would
/// change (0.1 + 0.2, -0.0, 1e-300), nulls, nesting and a u64 past i64.
fn deployment(name: &str, strategy: &str, z: f64, created_at: i64) -> NewDeployment {
    NewDeployment {
        name: name.to_owned(),
        experiment_id: None,
        experiment_name: None,
        fold: None,
        strategy: strategy.to_owned(),
        params: json!({"window": 20, "z": z, "pools": ["a", "b"], "cap": u64::MAX}),
        backtest: json!({"fee_bps": 30, "gas": {"price_gwei": 0.1 + 0.2, "limit": 250_000}}),
        model_id: None,
        model_name: None,
        model_hash: None,
        risk: json!({"max_position_quote": 1000.5, "daily_loss_quote": -0.0, "halt": null}),
        evidence: json!({
            "out_of_sample_net_pnl_quote": {"ga": z * 100.0, "no_trade": 0.0, "default": 1e-300},
            "folds": [{"fold": 0, "pnl": -3.25}],
        }),
        forced: false,
        dexlab_version: "0.9.0".to_owned(),
        git_commit: "0bd467e".to_owned(),
        created_by: "alice@lab".to_owned(),
        created_at,
        note: Some("first cut".to_owned()),
    }
}

fn model(name: &str, dir: &str) -> NewModel {
    NewModel {
        name: name.to_owned(),
        kind: RegisteredKind::Model(dexlab_types::ModelKind::Mlp),
        task: RegisteredTask::Regression,
        target: "label".to_owned(),
        dir: dir.to_owned(),
        content_hash: "ab".repeat(32),
        features: vec!["ret_1__a".into()],
        window: 8,
        seed: 1,
        backend: "flex".to_owned(),
        dataset_hash: None,
        git_commit: "0bd467e".to_owned(),
        config: json!({}),
        dataset: json!({}),
        training: json!({}),
        metrics: json!({}),
        train_seconds: None,
        created_at: 100,
    }
}

/// `d` with model `id` (registered as `name`).
fn with_model(d: NewDeployment, id: i64, name: &str) -> NewDeployment {
    NewDeployment {
        model_id: Some(id),
        model_name: Some(name.to_owned()),
        model_hash: Some("ab".repeat(32)),
        ..d
    }
}

/// What a deployment row holds besides its bookkeeping, to compare content across versions.
fn content(row: &DeploymentRow) -> NewDeployment {
    NewDeployment {
        created_by: String::new(),
        created_at: 0,
        note: None,
        ..row.deployment.clone()
    }
}

fn versions(rows: &[DeploymentRow]) -> Vec<(String, u32, Option<u32>, Option<u32>)> {
    rows.iter()
        .map(|r| {
            (
                r.deployment.name.clone(),
                r.version,
                r.replaces,
                r.rollback_of,
            )
        })
        .collect()
}

fn v(name: &str, version: u32, replaces: Option<u32>) -> (String, u32, Option<u32>, Option<u32>) {
    (name.to_owned(), version, replaces, None)
}

/// Versions count up per name, each replacing the one before; every reader gives back what was
/// stored, bit for bit; refused promotions write nothing.
mod versions {
    use super::*;

    async fn scenario(db: TestDb) -> anyhow::Result<()> {
        let store = &db.store;
        assert!(store.list_deployments().await?.is_empty());
        assert_eq!(store.current_deployment("arb").await?, None);
        assert!(store.deployment_versions("arb").await?.is_empty());

        let exp = store.create_experiment(&experiment("sweep", 1)).await?;
        let first = NewDeployment {
            experiment_id: Some(exp),
            experiment_name: Some("sweep".to_owned()),
            // The largest fold a row holds: past i32, so a 32-bit column would not do.
            fold: Some(u32::MAX),
            forced: true,
            note: None,
            ..deployment("arb", "cross_venue_arb", 0.1 + 0.2, 10)
        };
        let a1 = store.add_deployment(&first).await?;
        assert_eq!((a1.version, a1.replaces, a1.rollback_of), (1, None, None));
        assert_eq!(a1.deployment, first);
        let mr = store
            .add_deployment(&deployment("mr", "mean_reversion", 1.5, 11))
            .await?;
        assert_eq!(
            (mr.version, mr.replaces),
            (1, None),
            "versions are per name"
        );
        let a2 = store
            .add_deployment(&deployment("arb", "cross_venue_arb", 2.0, 12))
            .await?;
        let a3 = store
            .add_deployment(&deployment("arb", "momentum", -0.0, 13))
            .await?;
        assert_eq!((a2.version, a2.replaces), (2, Some(1)));
        assert_eq!((a3.version, a3.replaces), (3, Some(2)));

        // Every reader gives back what was stored.
        let stored = store.deployment("arb", 1).await?.expect("arb v1");
        assert_eq!(stored, a1);
        let z = stored.deployment.params["z"].as_f64().unwrap();
        assert_eq!(z.to_bits(), (0.1f64 + 0.2).to_bits());
        assert_eq!(stored.deployment.params["cap"].as_u64(), Some(u64::MAX));
        let flat = store.deployment("arb", 3).await?.expect("arb v3");
        let z = flat.deployment.params["z"].as_f64().unwrap();
        assert!(z == 0.0 && z.is_sign_negative(), "-0.0 survives: {z}");
        assert_eq!(
            flat.deployment.evidence["out_of_sample_net_pnl_quote"]["default"].as_f64(),
            Some(1e-300)
        );
        assert_eq!(store.current_deployment("arb").await?, Some(a3.clone()));
        assert_eq!(store.current_deployment("mr").await?, Some(mr.clone()));
        assert_eq!(
            store.deployment_versions("arb").await?,
            vec![a3.clone(), a2.clone(), a1.clone()]
        );
        assert_eq!(
            store.list_deployments().await?,
            vec![a3.clone(), a2.clone(), mr.clone(), a1.clone()],
            "newest first"
        );
        assert_eq!(store.deployment("arb", 4).await?, None);
        assert_eq!(store.deployment("nope", 1).await?, None);

        // Refused before anything is written: names that are no names, an unknown experiment,
        // an unknown model (named in the error).
        for bad in ["", "  ", "42", " arb", "arb\n"] {
            let err = store
                .add_deployment(&deployment(bad, "s", 1.0, 20))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, StoreError::InvalidName { what: "deployment", name, .. } if name == bad),
                "{bad:?}: {err}"
            );
        }
        let lost = NewDeployment {
            experiment_id: Some(exp + 1000),
            experiment_name: Some("gone".to_owned()),
            ..deployment("arb", "s", 1.0, 21)
        };
        let err = store.add_deployment(&lost).await.unwrap_err();
        let printed = everything_printed(&err);
        assert!(matches!(err, StoreError::NotFound { .. }), "{printed}");
        assert!(printed.contains("`gone`"), "{printed}");
        let unregistered = with_model(deployment("arb", "s", 1.0, 22), 9999, "ghost");
        let err = store.add_deployment(&unregistered).await.unwrap_err();
        let printed = everything_printed(&err);
        assert!(matches!(err, StoreError::NotFound { .. }), "{printed}");
        assert!(
            printed.contains("model 9999") && printed.contains("`ghost`"),
            "{printed}"
        );
        assert_eq!(store.list_deployments().await?.len(), 4);
        // And the store still takes the next version after the refusals.
        let a4 = store
            .add_deployment(&deployment("arb", "s", 4.0, 23))
            .await?;
        assert_eq!((a4.version, a4.replaces), (4, Some(3)));
        Ok(())
    }

    on_both_backends!(scenario);
}

/// A rollback adds a version with the content of the one the current version replaced; a second
/// rollback goes one further back; with nothing earlier, or no such name, it is refused.
mod rollback {
    use super::*;

    async fn scenario(db: TestDb) -> anyhow::Result<()> {
        let store = &db.store;
        let v1 = store
            .add_deployment(&deployment("arb", "one", 1.0, 10))
            .await?;
        let v2 = store
            .add_deployment(&NewDeployment {
                forced: true,
                ..deployment("arb", "two", 2.0, 20)
            })
            .await?;
        let v3 = store
            .add_deployment(&deployment("arb", "three", 0.1 + 0.2, 30))
            .await?;

        let v4 = store
            .rollback_deployment("arb", "bob@lab", 40, Some("v3 misprices"))
            .await?;
        assert_eq!(
            (v4.version, v4.replaces, v4.rollback_of),
            (4, Some(1), Some(2))
        );
        assert_eq!(
            content(&v4),
            content(&v2),
            "v2's content, forced flag included"
        );
        assert_eq!(
            (
                v4.deployment.created_by.as_str(),
                v4.deployment.created_at,
                v4.deployment.note.as_deref()
            ),
            ("bob@lab", 40, Some("v3 misprices"))
        );
        assert_eq!(store.current_deployment("arb").await?, Some(v4.clone()));
        // The rolled-back version is still there, unchanged.
        assert_eq!(store.deployment("arb", 3).await?, Some(v3.clone()));

        let v5 = store
            .rollback_deployment("arb", "carol@lab", 50, None)
            .await?;
        assert_eq!(
            (v5.version, v5.replaces, v5.rollback_of),
            (5, None, Some(1))
        );
        assert_eq!(content(&v5), content(&v1));
        assert_eq!(v5.deployment.note, None);
        assert_eq!(v5.deployment.created_by, "carol@lab");

        // v5 restores v1, which replaced nothing.
        let err = store
            .rollback_deployment("arb", "dave", 60, None)
            .await
            .unwrap_err();
        let printed = everything_printed(&err);
        assert!(
            matches!(err, StoreError::NothingToRollBack { version: 5, .. }),
            "{printed}"
        );
        assert!(
            printed.contains("`arb`") && printed.contains("nothing to roll back to"),
            "{printed}"
        );

        // A name with only its first version, and a name that does not exist.
        store
            .add_deployment(&deployment("solo", "s", 1.0, 70))
            .await?;
        let err = store
            .rollback_deployment("solo", "dave", 71, None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NothingToRollBack { version: 1, .. }),
            "{err}"
        );
        let err = store
            .rollback_deployment("nope", "dave", 72, None)
            .await
            .unwrap_err();
        let printed = everything_printed(&err);
        assert!(matches!(err, StoreError::NotFound { .. }), "{printed}");
        assert!(printed.contains("`nope`"), "{printed}");

        assert_eq!(
            versions(&store.deployment_versions("arb").await?),
            vec![
                ("arb".to_owned(), 5, None, Some(1)),
                ("arb".to_owned(), 4, Some(1), Some(2)),
                v("arb", 3, Some(2)),
                v("arb", 2, Some(1)),
                v("arb", 1, None),
            ]
        );
        assert_eq!(store.list_deployments().await?.len(), 6);

        // A promotion after rollbacks replaces the rollback.
        let v6 = store
            .add_deployment(&deployment("arb", "six", 6.0, 80))
            .await?;
        assert_eq!(
            (v6.version, v6.replaces, v6.rollback_of),
            (6, Some(5), None)
        );
        let v7 = store.rollback_deployment("arb", "erin", 90, None).await?;
        assert_eq!(
            (v7.version, v7.replaces, v7.rollback_of),
            (7, None, Some(5))
        );
        assert_eq!(content(&v7), content(&v1));
        Ok(())
    }

    on_both_backends!(scenario);
}

/// A retired model shows as retired wherever models are read, cannot be deployed (nor rolled
/// back to), and cannot be retired again; registering it again keeps it retired.
mod retirement {
    use super::*;

    async fn scenario(db: TestDb) -> anyhow::Result<()> {
        let store = &db.store;
        let lin_model = model("lin", "/models/lin");
        let lin = store.register_model(&lin_model).await?;
        let gru = store.register_model(&model("gru", "/models/gru")).await?;
        assert_eq!(
            store.model_by_name_or_id("lin").await?.unwrap().retired,
            None
        );

        let v1 = store
            .add_deployment(&with_model(deployment("arb", "s", 1.0, 10), lin, "lin"))
            .await?;
        assert_eq!(v1.deployment.model_id, Some(lin));
        store
            .add_deployment(&with_model(deployment("arb", "s", 2.0, 20), gru, "gru"))
            .await?;

        let retired = store
            .retire_model("lin", "alice@lab", "overfit to fold 2", 500)
            .await?;
        let expected = dexlab_store::Retired {
            at: 500,
            by: "alice@lab".to_owned(),
            reason: "overfit to fold 2".to_owned(),
        };
        assert_eq!(
            (retired.id, &retired.retired),
            (lin, &Some(expected.clone()))
        );
        assert_eq!(retired.model, lin_model);
        let by_id = store.model_by_name_or_id(&lin.to_string()).await?.unwrap();
        assert_eq!(by_id.retired, Some(expected.clone()));
        let listed: Vec<(i64, Option<dexlab_store::Retired>)> = store
            .list_models()
            .await?
            .into_iter()
            .map(|m| (m.id, m.retired))
            .collect();
        assert_eq!(listed, vec![(gru, None), (lin, Some(expected.clone()))]);

        // Deploying it is refused, naming it and its retirement; nothing is written.
        let err = store
            .add_deployment(&with_model(deployment("arb", "s", 3.0, 30), lin, "lin"))
            .await
            .unwrap_err();
        let printed = everything_printed(&err);
        assert!(
            matches!(err, StoreError::ModelRetired { id, .. } if id == lin),
            "{printed}"
        );
        assert!(
            printed.contains("`lin`")
                && printed.contains("alice@lab")
                && printed.contains("overfit to fold 2")
                && printed.contains("may not be deployed"),
            "{printed}"
        );
        // So is rolling back to the version that runs it.
        let err = store
            .rollback_deployment("arb", "bob", 40, None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::ModelRetired { id, .. } if id == lin),
            "{err}"
        );
        assert_eq!(store.deployment_versions("arb").await?.len(), 2);
        // The model still in service deploys.
        let v3 = store
            .add_deployment(&with_model(deployment("arb", "s", 3.0, 50), gru, "gru"))
            .await?;
        assert_eq!(v3.version, 3);

        // Retiring again says when and by whom; by id as well as by name.
        for key in ["lin".to_owned(), lin.to_string()] {
            let err = store
                .retire_model(&key, "bob", "again", 600)
                .await
                .unwrap_err();
            let printed = everything_printed(&err);
            assert!(matches!(err, StoreError::ModelRetired { .. }), "{printed}");
            assert!(
                printed.contains("500") && printed.contains("alice@lab"),
                "{printed}"
            );
        }
        assert_eq!(
            store.model_by_name_or_id("lin").await?.unwrap().retired,
            Some(expected.clone()),
            "the first retirement stands"
        );
        // An unknown model.
        for key in ["nope", "9999"] {
            let err = store
                .retire_model(key, "bob", "why", 700)
                .await
                .unwrap_err();
            let printed = everything_printed(&err);
            assert!(matches!(err, StoreError::NotFound { .. }), "{printed}");
            assert!(printed.contains(key), "{printed}");
        }

        // Registering the retired model again is the usual no-op, and it stays retired.
        assert_eq!(store.register_model(&lin_model).await?, lin);
        assert_eq!(
            store.model_by_name_or_id("lin").await?.unwrap().retired,
            Some(expected)
        );
        Ok(())
    }

    on_both_backends!(scenario);
}

/// Eight promotions of one name at once, from a multi-threaded runtime: each gets its own
/// version, the versions are 1 to 8, and each replaces the one before it.
mod concurrent {
    use super::*;

    const WRITERS: u32 = 8;

    async fn scenario(db: TestDb) -> anyhow::Result<()> {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(WRITERS as usize));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|i| {
                let store: Store = db.store.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    store
                        .add_deployment(&deployment("arb", "s", f64::from(i), i64::from(i)))
                        .await
                })
            })
            .collect();
        let mut rows = Vec::new();
        for task in tasks {
            rows.push(task.await??);
        }
        rows.sort_by_key(|r| r.version);
        assert_eq!(
            rows.iter().map(|r| r.version).collect::<Vec<_>>(),
            (1..=WRITERS).collect::<Vec<_>>()
        );
        for r in &rows {
            assert_eq!(r.replaces, r.version.checked_sub(1).filter(|&v| v > 0));
        }
        // Each writer's own content went into its row.
        let mut written: Vec<i64> = rows.iter().map(|r| r.deployment.created_at).collect();
        written.sort_unstable();
        assert_eq!(written, (0..i64::from(WRITERS)).collect::<Vec<_>>());
        assert_eq!(
            versions(&db.store.deployment_versions("arb").await?),
            rows.iter()
                .rev()
                .map(|r| v("arb", r.version, r.replaces))
                .collect::<Vec<_>>()
        );
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() -> anyhow::Result<()> {
        crate::support::on_sqlite(scenario).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() -> anyhow::Result<()> {
        crate::support::on_postgres(scenario).await
    }
}
