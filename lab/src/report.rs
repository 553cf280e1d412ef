//! Turns a stored experiment into the report's input: everything comes from the store, so a report
//! can be made on any machine that reaches it.

use dexlab_report::{FitnessSeries, FoldBars, ParamDistribution, ReportInput, Series, Table};
use dexlab_store::{ExperimentDetail, RunKind, Store};
use dexlab_strategy::registry;

use crate::error::{LabError, Result};
use crate::experiments::{ShownState, check_reportable};

/// Each run kind with its label in the report, in the report's order.
pub const KINDS: [(RunKind, &str); 4] = [
    (RunKind::Ga, "GA (optimised)"),
    (RunKind::RandomSearch, "random search"),
    (RunKind::Default, "default parameters"),
    (RunKind::NoTrade, "no trading"),
];

/// The report input of the experiment of this id or name, refused unless it finished (see
/// [`check_reportable`]).
pub async fn input(store: &Store, id_or_name: &str) -> Result<ReportInput> {
    let e = store
        .find_experiment(id_or_name)
        .await?
        .ok_or_else(|| LabError::NoExperiment(id_or_name.to_owned()))?;
    let d = store.experiment_detail(e.id).await?;
    check_reportable(&e, &ShownState::here(&e), d.folds.len())?;
    build(&d)
}

/// What an experiment's config records about the model of a model-driven strategy: its id, the
/// blocks it was trained, validated and tested on, its embargo and the blocks the run evaluated.
/// For `experiments show` and the report's summary; empty without a model.
pub fn model_rows(config: &serde_json::Value) -> Vec<(String, String)> {
    let Some(id) = config.get("model").and_then(|m| m.as_str()) else {
        return Vec::new();
    };
    let mut rows = vec![("model".to_owned(), id.to_owned())];
    let Some(w) = config.get("model_window") else {
        rows.push((
            "model blocks".to_owned(),
            "not recorded (an experiment of an older dexlab, which evaluated every block, \
             possibly the model's own training data)"
                .to_owned(),
        ));
        return rows;
    };
    let range = |v: &serde_json::Value| format!("{}..={}", v[0], v[1]);
    let s = &w["seen"];
    rows.extend([
        (
            "model trained on blocks".to_owned(),
            range(&s["train_blocks"]),
        ),
        (
            "model validated on blocks".to_owned(),
            range(&s["valid_blocks"]),
        ),
        (
            "model test split blocks".to_owned(),
            range(&s["test_blocks"]),
        ),
        (
            "model embargo".to_owned(),
            format!(
                "{} blocks (its labels read up to block {})",
                s["embargo"],
                s["first_unseen"].as_i64().map_or(-1, |b| b - 1)
            ),
        ),
        (
            "evaluated blocks".to_owned(),
            format!(
                "{} only ({}; {} earlier blocks of the dataset left out)",
                range(&w["evaluated_blocks"]),
                w["mode"].as_str().unwrap_or("?"),
                w["skipped_blocks"]
            ),
        ),
    ]);
    rows
}

/// The report input of an experiment's stored detail.
pub fn build(d: &ExperimentDetail) -> Result<ReportInput> {
    let e = &d.experiment;
    let quote = e
        .config
        .pointer("/backtest/quote")
        .and_then(|v| v.as_str())
        .unwrap_or("quote");
    let objective = match e.config.pointer("/ga/objective").and_then(|v| v.as_str()) {
        Some("net_pnl") | None => format!("net PnL ({quote})"),
        Some(o) => o.to_owned(),
    };
    let mut summary = vec![
        ("strategy".to_owned(), e.strategy.clone()),
        ("dataset".to_owned(), e.dataset.clone()),
        ("dataset sha256".to_owned(), e.dataset_hash.clone()),
        ("seed".to_owned(), e.seed.to_string()),
        ("status".to_owned(), e.status.to_string()),
        ("objective".to_owned(), objective.clone()),
        ("folds".to_owned(), d.folds.len().to_string()),
    ];
    summary.extend(model_rows(&e.config));
    if let Some(s) = &e.summary {
        for k in ["evaluations", "threads", "seconds"] {
            if let Some(v) = s.get(k) {
                summary.push((k.to_owned(), v.to_string()));
            }
        }
        // What the figures rest on: the queue assumption of data without fees, and errors.
        if let Some(q) = s.get("queue_assumption").and_then(|v| v.as_str()) {
            summary.push(("execution assumption".to_owned(), q.to_owned()));
        }
        let runs = s.get("runs").and_then(|r| r.as_object());
        let errors: u64 = runs
            .into_iter()
            .flat_map(|r| r.values())
            .filter_map(|r| r.get("errors")?.as_u64())
            .sum();
        if errors > 0 {
            let first = runs
                .into_iter()
                .flat_map(|r| r.values())
                .find_map(|r| r.get("first_error")?.as_str())
                .unwrap_or("?");
            summary.push((
                "run errors".to_owned(),
                format!("{errors} (figures not to be trusted); first: {first}"),
            ));
        }
    }
    let metric = |run_id: i64, window: &str, key: &str| -> Option<f64> {
        d.metrics
            .iter()
            .find(|(r, w, _)| *r == run_id && w == window)
            .and_then(|(_, _, m)| m.get(key)?.as_f64())
    };
    let mut rows = Vec::new();
    let mut bars = Vec::new();
    let mut folds: Vec<i32> = d.folds.iter().map(|f| f.fold).collect();
    folds.sort_unstable();
    for &fold in &folds {
        let run = |kind: RunKind| d.runs.iter().find(|r| r.fold == fold && r.kind == kind);
        for (kind, label) in KINDS {
            let Some(r) = run(kind) else { continue };
            let f = |x: Option<f64>| x.map_or("-".into(), |v| format!("{v:.6}"));
            rows.push(vec![
                (fold + 1).to_string(),
                label.to_owned(),
                r.params.to_string(),
                f(r.train_objective),
                f(r.test_objective),
                f(metric(r.id, "test", "net_pnl_quote")),
                f(metric(r.id, "test", "gas_spent_quote")),
                metric(r.id, "test", "trades").map_or("-".into(), |v| format!("{v}")),
                metric(r.id, "test", "reverts").map_or("-".into(), |v| format!("{v}")),
                f(metric(r.id, "test", "sharpe")),
                f(metric(r.id, "test", "max_drawdown")),
            ]);
        }
        if let Some(ga) = run(RunKind::Ga) {
            bars.push(FoldBars {
                fold: fold as usize + 1,
                in_sample: ga.train_objective.unwrap_or(0.0),
                out_of_sample: ga.test_objective.unwrap_or(0.0),
                baselines: KINDS[1..]
                    .iter()
                    .filter_map(|(k, label)| Some(((*label).to_owned(), run(*k)?.test_objective?)))
                    .collect(),
            });
        }
    }
    let fitness = d
        .runs
        .iter()
        .filter(|r| r.kind == RunKind::Ga)
        .map(|r| {
            let gens: Vec<_> = d.generations.iter().filter(|g| g.run_id == r.id).collect();
            FitnessSeries {
                label: format!("fold {}", r.fold + 1),
                best: gens.iter().map(|g| g.best).collect(),
                mean: gens.iter().map(|g| g.mean).collect(),
            }
        })
        .collect();
    // Out-of-sample equity, folds stitched end to end: each fold starts from the capital, so the
    // stitched curve is the capital plus the running sum of out-of-sample PnL.
    let mut equity = Vec::new();
    for (kind, label) in KINDS {
        let mut points = Vec::new();
        let mut carried = 0.0;
        for &fold in &folds {
            let Some(r) = d.runs.iter().find(|r| r.fold == fold && r.kind == kind) else {
                continue;
            };
            let Some((_, _, pts)) = d
                .equity
                .iter()
                .find(|(id, w, _)| *id == r.id && w == "test")
            else {
                continue;
            };
            let Some(first) = pts.first() else { continue };
            for p in pts {
                points.push((
                    p.block as f64,
                    first.equity + carried + (p.equity - first.equity),
                ));
            }
            carried += pts.last().map_or(0.0, |l| l.equity - first.equity);
        }
        equity.push(Series {
            label: label.to_owned(),
            points,
        });
    }
    let space = registry::info(&e.strategy)?.params;
    let last_ga = d
        .runs
        .iter()
        .filter(|r| r.kind == RunKind::Ga)
        .max_by_key(|r| r.fold)
        .map(|r| r.id);
    let final_pop = d
        .final_population
        .iter()
        .find(|(id, _)| Some(*id) == last_ga)
        .map(|(_, p)| p.as_slice())
        .unwrap_or(&[]);
    let population = space
        .specs
        .iter()
        .map(|s| ParamDistribution {
            name: s.name.to_owned(),
            lo: s.lo,
            hi: s.hi,
            values: final_pop
                .iter()
                .filter_map(|i| {
                    let v = i.params.get(s.name)?;
                    v.as_f64()
                        .or_else(|| v.as_bool().map(|b| f64::from(u8::from(b))))
                })
                .collect(),
        })
        .collect();
    Ok(ReportInput {
        title: format!("Experiment {} `{}`: {}", e.id, e.name, e.strategy),
        objective,
        summary,
        results: Table {
            headers: [
                "fold",
                "run",
                "parameters",
                "in-sample",
                "out-of-sample",
                "OOS net PnL",
                "OOS gas",
                "OOS bundles",
                "OOS reverts",
                "OOS Sharpe",
                "OOS max DD",
            ]
            .map(str::to_owned)
            .to_vec(),
            rows,
        },
        fitness,
        equity,
        population,
        walk_forward: bars,
    })
}
