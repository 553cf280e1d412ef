//! Every row type goes in and comes back out of `experiment_detail` unchanged.

use dexlab_store::{
    EquityPoint, ExperimentDetail, FoldRow, GenerationRow, IndividualRow, NewRun, RunRow,
    StoreError,
};
use dexlab_store::{ExperimentStatus, RunKind};
use serde_json::json;

use crate::support::{TestDb, experiment};

fn individual(idx: i32, fitness: f64) -> IndividualRow {
    IndividualRow {
        idx,
        params: json!({"lookback": idx, "z": fitness / 3.0}),
        fitness,
    }
}

async fn scenario(db: TestDb) -> anyhow::Result<()> {
    let store = &db.store;
    let id = store
        .create_experiment(&experiment("wf-2024", 1_700_000_000))
        .await?;
    let other = store
        .create_experiment(&experiment("someone-else", 1_700_000_100))
        .await?;

    let fresh = store.experiment_detail(id).await?;
    assert_eq!(fresh.experiment.status, ExperimentStatus::Running);
    assert_eq!(fresh.experiment.summary, None);
    assert!(fresh.folds.is_empty() && fresh.runs.is_empty() && fresh.final_population.is_empty());

    let summary = json!({"best_test": 0.25, "runs": 3});
    store
        .set_experiment_status(id, ExperimentStatus::Done, Some(&summary))
        .await?;

    let fold0 = FoldRow {
        experiment_id: id,
        fold: 0,
        train_from: 1,
        train_to: 2,
        test_from: 3,
        test_to: 4,
    };
    let fold1 = FoldRow {
        experiment_id: id,
        fold: 1,
        train_from: 19_000_000,
        train_to: 19_500_000,
        test_from: 19_500_001,
        test_to: i64::MAX as u64,
    };
    store
        .add_fold(&FoldRow {
            train_to: 999,
            ..fold0.clone()
        })
        .await?;
    store.add_fold(&fold1).await?;
    store.add_fold(&fold0).await?; // upsert replaces the first version
    let too_big = store
        .add_fold(&FoldRow {
            test_to: u64::MAX,
            ..fold1.clone()
        })
        .await;
    assert!(
        matches!(
            too_big,
            Err(StoreError::OutOfRange {
                field: "test_to",
                ..
            })
        ),
        "{too_big:?}"
    );

    let ga = NewRun {
        experiment_id: id,
        fold: 0,
        kind: RunKind::Ga,
        params: json!({}),
        train_objective: None,
        test_objective: None,
    };
    let ga_id = store.add_run(&ga).await?;
    let default_id = store
        .add_run(&NewRun {
            kind: RunKind::Default,
            params: json!({"lookback": 20}),
            train_objective: Some(1.5),
            test_objective: None,
            ..ga.clone()
        })
        .await?;
    let no_trade_id = store
        .add_run(&NewRun {
            fold: 1,
            kind: RunKind::NoTrade,
            train_objective: Some(0.0),
            test_objective: Some(-0.0),
            ..ga.clone()
        })
        .await?;
    let foreign_run = store
        .add_run(&NewRun {
            experiment_id: other,
            ..ga.clone()
        })
        .await?;

    // None first, then Some, through the same statement on the same pool.
    store
        .update_run(ga_id, &json!({"lookback": 7}), None, None)
        .await?;
    store
        .update_run(
            ga_id,
            &json!({"lookback": 14, "band": 2.5}),
            Some(0.75),
            Some(-0.125),
        )
        .await?;
    store
        .update_run(default_id, &json!({"lookback": 20}), Some(1.5), None)
        .await?;

    let found = store
        .find_run(id, 0, RunKind::Ga)
        .await?
        .expect("ga run of fold 0");
    let ga_row = RunRow {
        id: ga_id,
        experiment_id: id,
        fold: 0,
        kind: RunKind::Ga,
        params: json!({"lookback": 14, "band": 2.5}),
        train_objective: Some(0.75),
        test_objective: Some(-0.125),
    };
    assert_eq!(found, ga_row);
    assert_eq!(store.find_run(id, 1, RunKind::Ga).await?, None);
    assert_eq!(store.find_run(id, 0, RunKind::RandomSearch).await?, None);

    let gens: Vec<GenerationRow> = (0..3)
        .map(|generation| GenerationRow {
            run_id: ga_id,
            generation,
            best: 1.0 + f64::from(generation),
            mean: 0.5,
            worst: -1.0,
            evaluations: 40 * i64::from(generation + 1),
        })
        .collect();
    for g in &gens {
        let population: Vec<_> = (0..4)
            .map(|i| individual(i, f64::from(g.generation * 10 + i)))
            .collect();
        store.add_generation(g, &population).await?;
    }
    store
        .add_generation(
            &GenerationRow {
                run_id: foreign_run,
                ..gens[0].clone()
            },
            &[individual(0, 9.0)],
        )
        .await?;

    store
        .add_metrics(ga_id, "train", &json!({"sharpe": 1.0}))
        .await?;
    store
        .add_metrics(ga_id, "train", &json!({"sharpe": 1.25, "trades": 12}))
        .await?; // upsert
    store
        .add_metrics(ga_id, "test", &json!({"sharpe": -0.5}))
        .await?;
    store
        .add_metrics(no_trade_id, "test", &json!({"sharpe": 0.0}))
        .await?;
    store
        .add_metrics(foreign_run, "test", &json!({"not": "mine"}))
        .await?;

    let curve: Vec<EquityPoint> = (0..1000u64)
        .map(|i| EquityPoint {
            block: 19_500_001 + i,
            equity: 1000.0 + (i as f64) * 0.1,
        })
        .collect();
    store.add_equity(ga_id, "test", &curve[..10]).await?;
    store.add_equity(ga_id, "test", &curve).await?; // upsert
    store.add_equity(ga_id, "train", &[]).await?;
    store.add_equity(foreign_run, "test", &curve[..3]).await?;

    let detail = store.experiment_detail(id).await?;
    let mut expected_experiment = store
        .find_experiment(&id.to_string())
        .await?
        .expect("by id");
    assert_eq!(expected_experiment.seed, u64::MAX);
    assert_eq!(expected_experiment.config, experiment("wf-2024", 0).config);
    expected_experiment.status = ExperimentStatus::Done;
    expected_experiment.summary = Some(summary.clone());
    let expected = ExperimentDetail {
        experiment: expected_experiment,
        folds: vec![fold0, fold1],
        runs: vec![
            ga_row,
            RunRow {
                id: default_id,
                experiment_id: id,
                fold: 0,
                kind: RunKind::Default,
                params: json!({"lookback": 20}),
                train_objective: Some(1.5),
                test_objective: None,
            },
            RunRow {
                id: no_trade_id,
                experiment_id: id,
                fold: 1,
                kind: RunKind::NoTrade,
                params: json!({}),
                train_objective: Some(0.0),
                test_objective: Some(-0.0),
            },
        ],
        generations: gens,
        final_population: vec![(
            ga_id,
            (0..4).map(|i| individual(i, f64::from(20 + i))).collect(),
        )],
        metrics: vec![
            (ga_id, "test".to_owned(), json!({"sharpe": -0.5})),
            (
                ga_id,
                "train".to_owned(),
                json!({"sharpe": 1.25, "trades": 12}),
            ),
            (no_trade_id, "test".to_owned(), json!({"sharpe": 0.0})),
        ],
        equity: vec![
            (ga_id, "test".to_owned(), curve),
            (ga_id, "train".to_owned(), vec![]),
        ],
    };
    assert_eq!(detail, expected);
    assert_eq!(detail.experiment.status, ExperimentStatus::Done);
    assert_eq!(detail.experiment.summary, Some(summary));

    // Newest first.
    let listed: Vec<i64> = store
        .list_experiments()
        .await?
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(listed, vec![other, id]);

    // Missing rows are reported as such, naming what was missing.
    let missing = store.experiment_detail(id + 1000).await.unwrap_err();
    assert!(
        matches!(missing, StoreError::NotFound { .. }),
        "{missing:?}"
    );
    assert!(
        missing
            .to_string()
            .contains(&format!("experiment {}", id + 1000)),
        "{missing}"
    );
    let missing = store
        .set_experiment_status(id + 1000, ExperimentStatus::Done, None)
        .await
        .unwrap_err();
    assert!(
        matches!(missing, StoreError::NotFound { .. }),
        "{missing:?}"
    );
    let missing = store
        .update_run(ga_id + 1000, &json!({}), None, None)
        .await
        .unwrap_err();
    assert!(
        missing
            .to_string()
            .contains(&format!("run {}", ga_id + 1000)),
        "{missing}"
    );
    // A run of an experiment that does not exist breaks a foreign key; the error says which.
    let orphan = store
        .add_run(&NewRun {
            experiment_id: id + 1000,
            ..ga
        })
        .await
        .unwrap_err();
    assert!(
        matches!(orphan, StoreError::Database { op: "add_run", .. }),
        "{orphan:?}"
    );
    assert!(
        orphan
            .to_string()
            .contains(&format!("experiment {}", id + 1000)),
        "{orphan}"
    );

    // Clearing the summary.
    store
        .set_experiment_status(id, ExperimentStatus::Failed, None)
        .await?;
    let cleared = store
        .find_experiment(&id.to_string())
        .await?
        .expect("by id");
    assert_eq!(
        (cleared.status, cleared.summary),
        (ExperimentStatus::Failed, None)
    );
    Ok(())
}

on_both_backends!(scenario);
