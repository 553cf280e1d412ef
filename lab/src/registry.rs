//! The model registry as readers see it: find a model, its headline figures, whether models can be
//! compared metric for metric, and what a directory holds. Reads the store and JSON only (no burn).

use std::collections::BTreeMap;
use std::path::Path;

use dexlab_store::{ModelRow, RegisteredKind, RegisteredTask, Store};
use dexlab_types::predict::{Metrics, TestReport};
use dexlab_types::{AgentKind, ModelKind};
use serde::Serialize;

use crate::error::{LabError, Result};

/// The registered model of this name or id.
pub async fn find(store: &Store, name_or_id: &str) -> Result<ModelRow> {
    store
        .model_by_name_or_id(name_or_id)
        .await?
        .ok_or_else(|| LabError::NoModel {
            name_or_id: name_or_id.to_owned(),
            backend: store.backend(),
            url: store.url().to_owned(),
        })
}

/// A registered model with its headline figures.
#[derive(Debug, Clone)]
pub struct Listed {
    pub row: ModelRow,
    /// A predictive model's test loss next to its best baseline's.
    pub headline: Option<Headline>,
    /// An RL agent's out-of-sample net PnL, and the best baseline's name and net PnL.
    pub agent_headline: Option<(f64, String, f64)>,
}

/// Every registered model, newest first, with its headline figures.
pub async fn list(store: &Store) -> Result<Vec<Listed>> {
    Ok(store
        .list_models()
        .await?
        .into_iter()
        .map(|row| Listed {
            headline: test_report(&row).as_ref().map(headline),
            agent_headline: agent_headline(&row),
            row,
        })
        .collect())
}

/// The test split and metrics of a predictive model (`None` for rows of other kinds).
pub fn test_report(row: &ModelRow) -> Option<TestReport> {
    serde_json::from_value(row.model.metrics.clone()).ok()
}

#[derive(Debug, Clone, Serialize)]
pub struct Headline {
    /// The task's loss: `mse` or `log_loss`; lower is better.
    pub metric: &'static str,
    pub model: f64,
    pub best_baseline: Option<NamedValue>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NamedValue {
    pub name: String,
    pub value: f64,
}

/// The model's test loss next to its best baseline's.
pub fn headline(t: &TestReport) -> Headline {
    let metric = match t.model {
        Metrics::Regression(_) => "mse",
        Metrics::Classification(_) => "log_loss",
    };
    let best_baseline = t
        .baselines
        .iter()
        .map(|b| NamedValue {
            name: b.name.clone(),
            value: b.metrics.loss(),
        })
        .filter(|b| b.value.is_finite())
        .min_by(|a, b| a.value.total_cmp(&b.value));
    Headline {
        metric,
        model: t.model.loss(),
        best_baseline,
    }
}

/// An RL agent's out-of-sample net PnL, and the best baseline's name and net PnL (higher is
/// better).
pub fn agent_headline(r: &ModelRow) -> Option<(f64, String, f64)> {
    let runs = r.model.metrics.get("runs")?.as_array()?;
    let pnl = |run: &serde_json::Value| run.pointer("/metrics/net_pnl_quote")?.as_f64();
    let mine = runs
        .iter()
        .find(|x| x["kind"] == r.model.kind.as_str())
        .and_then(pnl)?;
    let best = runs
        .iter()
        .filter(|x| x["kind"] != r.model.kind.as_str())
        .filter_map(|x| Some((x["kind"].as_str()?, pnl(x)?)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    Some((mine, best.0.to_owned(), best.1))
}

/// The metrics of a task, in the order they are shown.
pub fn metric_names(m: &Metrics) -> Vec<&'static str> {
    match m {
        Metrics::Regression(_) => vec!["mse", "mae", "directional_accuracy"],
        Metrics::Classification(_) => vec!["auc", "accuracy", "log_loss"],
    }
}

/// Each metric of [`metric_names`] (`None` where undefined, e.g. AUC on one class).
pub fn metric_values(m: &Metrics) -> BTreeMap<&'static str, Option<f64>> {
    match m {
        Metrics::Regression(r) => BTreeMap::from([
            ("mse", Some(r.mse)),
            ("mae", Some(r.mae)),
            ("directional_accuracy", r.directional_accuracy),
        ]),
        Metrics::Classification(c) => BTreeMap::from([
            ("auc", c.auc),
            ("accuracy", Some(c.accuracy)),
            ("log_loss", Some(c.log_loss)),
        ]),
    }
}

/// Whether a higher value of the metric is better.
pub fn higher_is_better(metric: &str) -> bool {
    matches!(metric, "directional_accuracy" | "auc" | "accuracy")
}

#[derive(Debug, Clone, Serialize)]
pub struct TestSplit {
    pub rows: usize,
    pub first_block: i64,
    pub last_block: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BaselineMetrics {
    pub name: String,
    pub metrics: BTreeMap<&'static str, Option<f64>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BestBaseline {
    pub name: String,
    /// The task's loss (`mse` or `log_loss`).
    pub metric: &'static str,
    pub value: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Compared {
    pub id: i64,
    pub name: String,
    pub kind: RegisteredKind,
    pub task: RegisteredTask,
    pub target: String,
    pub dataset_hash: Option<String>,
    pub window: u32,
    pub test_split: Option<TestSplit>,
    pub metrics: BTreeMap<&'static str, Option<f64>>,
    pub baselines: Vec<BaselineMetrics>,
    pub best_baseline: Option<BestBaseline>,
}

/// Why `rows` cannot be compared metric for metric; empty when they can.
pub fn comparability(rows: &[ModelRow], reports: &[Option<TestReport>]) -> Vec<String> {
    let mut problems = Vec::new();
    for (r, t) in rows.iter().zip(reports) {
        if t.is_none() {
            problems.push(format!(
                "`{}` has no test metrics of a predictive model",
                r.model.name
            ));
        }
    }
    let mut differ = |what: &str, why: &str, values: Vec<String>| {
        let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
        for (r, v) in rows.iter().zip(values) {
            match groups.iter_mut().find(|(g, _)| *g == v) {
                Some((_, names)) => names.push(&r.model.name),
                None => groups.push((v, vec![&r.model.name])),
            }
        }
        if groups.len() > 1 {
            let parts: Vec<String> = groups
                .iter()
                .map(|(v, names)| {
                    format!(
                        "{v} for {}",
                        names
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
                .collect();
            problems.push(format!("{what} differ ({why}): {}", parts.join("; ")));
        }
    };
    differ(
        "tasks",
        "their metrics measure different things",
        rows.iter().map(|r| r.model.task.to_string()).collect(),
    );
    differ(
        "targets",
        "they predict different labels",
        rows.iter()
            .map(|r| format!("`{}`", r.model.target))
            .collect(),
    );
    differ(
        "datasets",
        "features computed from different chain data",
        rows.iter()
            .map(|r| {
                r.model
                    .dataset_hash
                    .as_deref()
                    .map_or("an unknown dataset".into(), |h| {
                        format!("dataset {}", crate::short(h))
                    })
            })
            .collect(),
    );
    differ(
        "test splits",
        "scored on different rows",
        reports
            .iter()
            .map(|t| {
                t.as_ref().map_or("no test split".into(), |t| {
                    format!(
                        "blocks {}..{} ({} rows)",
                        t.first_block, t.last_block, t.rows
                    )
                })
            })
            .collect(),
    );
    // All unknown is no difference above, but no evidence of the same data either.
    if rows.iter().all(|r| r.model.dataset_hash.is_none()) {
        problems.push("the dataset is unknown (no dataset hash): cannot tell whether the models saw the same data".into());
    }
    problems
}

/// Models side by side: whether they are comparable, why not, and each one's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub comparable: bool,
    /// Why the models are not comparable, in words; empty when they are.
    pub problems: Vec<String>,
    /// The metrics compared, in order (those of the first model's task).
    pub metrics: Vec<&'static str>,
    pub models: Vec<Compared>,
}

/// Compares registered models metric for metric.
pub fn compare(rows: &[ModelRow]) -> Comparison {
    let reports: Vec<Option<TestReport>> = rows.iter().map(test_report).collect();
    let problems = comparability(rows, &reports);
    let names = reports
        .iter()
        .flatten()
        .next()
        .map(|t| metric_names(&t.model))
        .unwrap_or_default();
    let models = rows
        .iter()
        .zip(&reports)
        .map(|(r, t)| Compared {
            id: r.id,
            name: r.model.name.clone(),
            kind: r.model.kind,
            task: r.model.task,
            target: r.model.target.clone(),
            dataset_hash: r.model.dataset_hash.clone(),
            window: r.model.window,
            test_split: t.as_ref().map(|t| TestSplit {
                rows: t.rows,
                first_block: t.first_block,
                last_block: t.last_block,
            }),
            metrics: t
                .as_ref()
                .map(|t| metric_values(&t.model))
                .unwrap_or_default(),
            baselines: t
                .iter()
                .flat_map(|t| &t.baselines)
                .map(|b| BaselineMetrics {
                    name: b.name.clone(),
                    metrics: metric_values(&b.metrics),
                })
                .collect(),
            best_baseline: t.as_ref().and_then(|t| {
                let h = headline(t);
                h.best_baseline.map(|b| BestBaseline {
                    name: b.name,
                    metric: h.metric,
                    value: b.value,
                })
            }),
        })
        .collect();
    Comparison {
        comparable: problems.is_empty(),
        problems,
        metrics: names,
        models,
    }
}

/// What a model directory holds, told from its files alone (JSON, no weights loaded): a
/// predictive model's `config.json` names its `model_kind`; an agent's names its algorithm
/// (`{"config": {"dqn": …}}`), and a trading agent written by `dexlab rl train` says it again in
/// `env.json`.
pub fn dir_kind(dir: &Path) -> Result<RegisteredKind> {
    let read = |file: &str| -> Result<serde_json::Value> {
        let path = dir.join(file);
        let bytes = std::fs::read(&path).map_err(|e| LabError::io(&path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| LabError::json(path.display().to_string(), e))
    };
    let config = read("config.json")?;
    if let Some(k) = config.get("model_kind").and_then(|k| k.as_str()) {
        return ModelKind::from_name(k)
            .map(RegisteredKind::Model)
            .ok_or_else(|| {
                LabError::Refused(format!("{}: unknown model kind `{k}`", dir.display()))
            });
    }
    let agent = config
        .get("config")
        .and_then(|c| c.as_object())
        .filter(|c| c.len() == 1)
        .and_then(|c| c.keys().next())
        .and_then(|k| AgentKind::from_name(k));
    match agent {
        Some(k) => Ok(RegisteredKind::Agent(k)),
        None => Err(LabError::Refused(format!(
            "{}: neither a model directory (`dexlab train`) nor an agent directory \
             (`dexlab rl train`): its config.json names no model kind or agent",
            dir.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_says_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let config = |v: serde_json::Value| {
            std::fs::write(dir.path().join("config.json"), v.to_string()).unwrap()
        };
        config(serde_json::json!({"model_kind": "gru", "seed": 1}));
        assert_eq!(
            dir_kind(dir.path()).unwrap(),
            RegisteredKind::Model(ModelKind::Gru)
        );
        config(serde_json::json!({"obs_dim": 3, "config": {"ppo": {}}}));
        assert_eq!(
            dir_kind(dir.path()).unwrap(),
            RegisteredKind::Agent(AgentKind::Ppo)
        );
        config(serde_json::json!({"something": "else"}));
        let e = dir_kind(dir.path()).unwrap_err().to_string();
        assert!(e.contains("neither a model directory"), "{e}");
        assert!(dir_kind(&dir.path().join("missing")).is_err());
    }
}
