//! Every f64 comes back bit for bit, wherever it is stored; NaN and infinities are refused.

use dexlab_store::RunKind;
use dexlab_store::{EquityPoint, GenerationRow, IndividualRow, NewRun, StoreError};
use serde_json::json;

use crate::support::{TestDb, experiment};

fn awkward() -> Vec<f64> {
    vec![
        0.1 + 0.2,
        1e-300,
        -123456.789,
        -0.0,
        0.0,
        5e-324, // smallest subnormal
        f64::MIN_POSITIVE,
        f64::MAX,
        f64::MIN,
        f64::EPSILON,
        1.0 / 3.0,
        9_007_199_254_740_993.0, // 2^53 + 1, rounds to 2^53
        1e18,
        -2.5e-8,
        std::f64::consts::PI,
        0.30000000000000004,
        123_456_789.123_456_78,
    ]
}

fn assert_bits(what: &str, got: f64, want: f64) {
    assert_eq!(
        got.to_bits(),
        want.to_bits(),
        "{what}: got {got:e}, want {want:e}"
    );
}

async fn scenario(db: TestDb) -> anyhow::Result<()> {
    let store = &db.store;
    let id = store.create_experiment(&experiment("floats", 1)).await?;
    let values = awkward();
    let base = NewRun {
        experiment_id: id,
        fold: 0,
        kind: RunKind::Ga,
        params: json!({}),
        train_objective: None,
        test_objective: None,
    };

    let mut runs = Vec::new();
    for (i, &v) in values.iter().enumerate() {
        let run_id = store
            .add_run(&NewRun {
                fold: i as i32,
                params: json!({"v": v}),
                train_objective: Some(v),
                test_objective: Some(-v),
                ..base.clone()
            })
            .await?;
        store
            .add_generation(
                &GenerationRow {
                    run_id,
                    generation: 0,
                    best: v,
                    mean: v / 2.0,
                    worst: -v,
                    evaluations: 1,
                },
                &[IndividualRow {
                    idx: 0,
                    params: json!([v]),
                    fitness: v,
                }],
            )
            .await?;
        store.add_metrics(run_id, "test", &json!({"v": v})).await?;
        runs.push(run_id);
    }
    let curve: Vec<EquityPoint> = values
        .iter()
        .enumerate()
        .map(|(i, &equity)| EquityPoint {
            block: i as u64,
            equity,
        })
        .collect();
    store.add_equity(runs[0], "test", &curve).await?;
    // Through update_run too.
    store
        .update_run(
            runs[1],
            &json!({"v": values[1]}),
            Some(values[3]),
            Some(values[5]),
        )
        .await?;

    let detail = store.experiment_detail(id).await?;
    for (i, &v) in values.iter().enumerate() {
        let run = &detail.runs[i];
        let (train, test) = if i == 1 {
            (values[3], values[5])
        } else {
            (v, -v)
        };
        assert_bits("train_objective", run.train_objective.expect("set"), train);
        assert_bits("test_objective", run.test_objective.expect("set"), test);
        assert_bits("params", run.params["v"].as_f64().expect("number"), v);
        let g = &detail.generations[i];
        assert_bits("best", g.best, v);
        assert_bits("mean", g.mean, v / 2.0);
        assert_bits("worst", g.worst, -v);
        let (_, population) = &detail.final_population[i];
        assert_bits("fitness", population[0].fitness, v);
        assert_bits(
            "individual params",
            population[0].params[0].as_f64().expect("number"),
            v,
        );
        assert_bits(
            "metrics",
            detail.metrics[i].2["v"].as_f64().expect("number"),
            v,
        );
    }
    for (got, want) in detail.equity[0].2.iter().zip(&curve) {
        assert_bits("equity", got.equity, want.equity);
    }
    assert_eq!(detail.equity[0].2.len(), curve.len());

    // Non-finite values are refused before anything is written.
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = store
            .add_run(&NewRun {
                train_objective: Some(bad),
                ..base.clone()
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NonFinite { .. }), "{err:?}");
        assert!(
            err.to_string().contains("train_objective must be finite"),
            "{err}"
        );

        let err = store
            .update_run(runs[0], &json!({}), None, Some(bad))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains(&format!("run {}", runs[0])),
            "{err}"
        );

        let g = GenerationRow {
            run_id: runs[0],
            generation: 7,
            best: 1.0,
            mean: bad,
            worst: 0.0,
            evaluations: 1,
        };
        let err = store.add_generation(&g, &[]).await.unwrap_err();
        assert!(err.to_string().contains("mean must be finite"), "{err}");
        let g = GenerationRow { mean: 0.5, ..g };
        let ind = IndividualRow {
            idx: 3,
            params: json!({}),
            fitness: bad,
        };
        let err = store.add_generation(&g, &[ind]).await.unwrap_err();
        assert!(err.to_string().contains("fitness of individual 3"), "{err}");

        let err = store
            .add_equity(
                runs[0],
                "test",
                &[EquityPoint {
                    block: 42,
                    equity: bad,
                }],
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("equity at block 42"), "{err}");
    }
    let after = store.experiment_detail(id).await?;
    assert_eq!(
        after, detail,
        "refused writes must leave the store as it was"
    );
    Ok(())
}

on_both_backends!(scenario);
