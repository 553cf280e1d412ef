//! `add_generation` is one transaction and idempotent: re-adding a generation replaces it.

use dexlab_store::RunKind;
use dexlab_store::{GenerationRow, IndividualRow, NewRun, StoreError};
use serde_json::json;

use crate::support::{TestDb, experiment};

fn population(n: i32, offset: f64) -> Vec<IndividualRow> {
    (0..n)
        .map(|idx| IndividualRow {
            idx,
            params: json!({"gene": [idx, idx * 2]}),
            fitness: offset + f64::from(idx) / 7.0,
        })
        .collect()
}

async fn scenario(db: TestDb) -> anyhow::Result<()> {
    let store = &db.store;
    let id = store.create_experiment(&experiment("ga", 1)).await?;
    let run = NewRun {
        experiment_id: id,
        fold: 0,
        kind: RunKind::Ga,
        params: json!({}),
        train_objective: None,
        test_objective: None,
    };
    let run_id = store.add_run(&run).await?;
    let gen0 = GenerationRow {
        run_id,
        generation: 0,
        best: 3.0,
        mean: 1.0,
        worst: -2.0,
        evaluations: 5,
    };

    store.add_generation(&gen0, &population(5, 0.0)).await?;
    let replaced = GenerationRow {
        best: 4.0,
        mean: 2.0,
        worst: 0.5,
        evaluations: 8,
        ..gen0.clone()
    };
    store
        .add_generation(&replaced, &population(3, 100.0))
        .await?;

    let detail = store.experiment_detail(id).await?;
    assert_eq!(detail.generations, vec![replaced.clone()]);
    assert_eq!(
        detail.final_population,
        vec![(run_id, population(3, 100.0))]
    );

    // A population larger than one multi-row INSERT.
    let gen1 = GenerationRow {
        generation: 1,
        ..replaced.clone()
    };
    store.add_generation(&gen1, &population(601, -5.0)).await?;
    store.add_generation(&gen1, &population(601, -5.0)).await?;
    let detail = store.experiment_detail(id).await?;
    assert_eq!(detail.generations, vec![replaced.clone(), gen1.clone()]);
    assert_eq!(
        detail.final_population,
        vec![(run_id, population(601, -5.0))]
    );

    // The final population is the last generation's even when it is empty.
    let gen2 = GenerationRow {
        generation: 2,
        ..gen1.clone()
    };
    store.add_generation(&gen2, &[]).await?;
    let detail = store.experiment_detail(id).await?;
    assert_eq!(detail.final_population, vec![(run_id, vec![])]);

    // A failing write (duplicate idx) rolls back as a whole: generation 1 keeps its old rows.
    let mut duplicate = population(4, 50.0);
    duplicate[3].idx = 0;
    let changed = GenerationRow {
        best: 99.0,
        ..gen1.clone()
    };
    let err = store
        .add_generation(&changed, &duplicate)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Database {
                op: "add_generation",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&format!("run {run_id} generation 1")),
        "{err}"
    );
    store.add_generation(&gen2, &population(2, 0.0)).await?; // store still usable
    let detail = store.experiment_detail(id).await?;
    assert_eq!(detail.generations, vec![replaced, gen1, gen2]);
    assert_eq!(detail.final_population, vec![(run_id, population(2, 0.0))]);

    // A generation of a run that does not exist.
    let orphan = GenerationRow {
        run_id: run_id + 1000,
        ..gen0
    };
    let err = store
        .add_generation(&orphan, &population(1, 0.0))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("run {} generation 0", run_id + 1000)),
        "{err}"
    );
    Ok(())
}

on_both_backends!(scenario);
