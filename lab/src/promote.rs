//! Promotion: an experiment's tuned strategy, with its model and the operator's risk limits,
//! becomes a named deployment in the store that paper and live sessions run.
//!
//! A deployment records what the engine needs and what the decision rested on: the strategy and
//! the parameters the genetic optimiser found (the last fold's, fitted on the most recent data,
//! or `--fold N`'s), the experiment's execution config, the model by registry id and content
//! hash (never a local path), the risk limits, the out-of-sample evidence next to every baseline,
//! dexlab's version and commit, who promoted it and when. Promotion is refused when:
//! - the experiment is not done, or has no tuned run for the fold;
//! - its out-of-sample net PnL over all folds is not better than not trading (unless forced, and
//!   then the deployment says so);
//! - the model is retired, is not the one the experiment ran with, or reads a feature column the
//!   online code cannot compute on the experiment's pools.
//!
//! Rows are never deleted; a rollback is a new version restoring an older one's content.

use dexlab_engine::risk::RiskLimits;
use dexlab_store::{DeploymentRow, ExperimentStatus, ModelRow, NewDeployment, Store};
use dexlab_types::RunKind;
use serde_json::{Value, json};

use crate::{LabError, Result};

/// What to promote.
#[derive(Debug, Clone)]
pub struct PromoteRequest {
    /// The experiment, by id or name.
    pub experiment: String,
    /// The fold whose tuned parameters to deploy (default: the last).
    pub fold: Option<u32>,
    /// The model, by registry name or id (default: the experiment's own).
    pub model: Option<String>,
    pub risk: RiskLimits,
    /// The deployment's name; promoting to an existing name adds a version.
    pub name: String,
    /// Promote even if the out-of-sample result is not better than not trading.
    pub force: bool,
    /// Who promotes (recorded).
    pub by: String,
    pub note: Option<String>,
    /// Unix seconds.
    pub at: i64,
    /// `git rev-parse HEAD` of the build, or "unknown".
    pub git_commit: String,
}

/// The out-of-sample net PnL (quote units) of each run kind over all folds, from the
/// experiment's summary.
fn oos_pnl(summary: &Value, kind: RunKind) -> Option<f64> {
    summary["runs"][kind.as_str()]["out_of_sample_net_pnl_quote"].as_f64()
}

/// Records the deployment, or says why not.
pub async fn promote(store: &Store, r: &PromoteRequest) -> Result<DeploymentRow> {
    let exp = store
        .find_experiment(&r.experiment)
        .await?
        .ok_or_else(|| LabError::NoExperiment(r.experiment.clone()))?;
    let what = format!("experiment {} `{}`", exp.id, exp.name);
    if exp.status != ExperimentStatus::Done {
        return Err(LabError::Refused(format!(
            "{what} is {}: only a finished experiment can be promoted",
            exp.status.as_str()
        )));
    }
    let summary = exp.summary.clone().unwrap_or(Value::Null);
    let detail = store.experiment_detail(exp.id).await?;
    let tuned: Vec<_> = detail
        .runs
        .iter()
        .filter(|run| run.kind == RunKind::Ga)
        .collect();
    let run = match r.fold {
        Some(f) => tuned.iter().find(|run| run.fold == f as i32).copied(),
        None => tuned.iter().max_by_key(|run| run.fold).copied(),
    }
    .ok_or_else(|| {
        LabError::Refused(match r.fold {
            Some(f) => format!(
                "{what} has no tuned (ga) run for fold {f}; its folds: {:?}",
                tuned.iter().map(|run| run.fold).collect::<Vec<_>>()
            ),
            None => format!("{what} has no tuned (ga) run"),
        })
    })?;

    // The evidence: out of sample, next to every baseline.
    let ga = oos_pnl(&summary, RunKind::Ga);
    let no_trade = oos_pnl(&summary, RunKind::NoTrade).unwrap_or(0.0);
    let better = ga.is_some_and(|g| g > no_trade);
    if !better && !r.force {
        return Err(LabError::Refused(format!(
            "{what}: its out-of-sample net PnL over all folds is {} quote against {no_trade} for \
             not trading, not better; promote it anyway with --force (the deployment records \
             that it was forced)",
            ga.map_or("unknown".into(), |g| g.to_string())
        )));
    }
    let evidence = json!({
        "judged_on": "out_of_sample_net_pnl_quote, all folds",
        "better_than_not_trading": better,
        "out_of_sample_net_pnl_quote": {
            "ga": ga,
            "no_trade": no_trade,
            "random_search": oos_pnl(&summary, RunKind::RandomSearch),
            "default": oos_pnl(&summary, RunKind::Default),
        },
        "fold": run.fold,
        "fold_train_objective": run.train_objective,
        "fold_test_objective": run.test_objective,
        "folds": detail.folds.len(),
    });

    // The model: the experiment's own, registered, not retired, computable online.
    let exp_model = summary["model"].as_str().map(str::to_owned);
    let model: Option<ModelRow> = match (&r.model, &exp_model) {
        (Some(m), None) => {
            return Err(LabError::Refused(format!(
                "{what} ran `{}` without a model; --model {m} would deploy a model it was never \
                 evaluated with",
                exp.strategy
            )));
        }
        (None, None) => None,
        (named, Some(id)) => {
            let by_id = find_model_of_id(store, id).await?;
            let row = match named {
                None => by_id.ok_or_else(|| {
                    LabError::Refused(format!(
                        "{what} ran with model {id}, which no registry row holds (its directory \
                         moved, changed or was never registered): register it, or name it with \
                         --model"
                    ))
                })?,
                Some(m) => {
                    let row =
                        store
                            .model_by_name_or_id(m)
                            .await?
                            .ok_or_else(|| LabError::NoModel {
                                name_or_id: m.clone(),
                                backend: store.backend(),
                                url: store.url().to_owned(),
                            })?;
                    if weights_id(std::path::Path::new(&row.model.dir)).as_deref() != Some(id) {
                        return Err(LabError::Refused(format!(
                            "{what} ran with model {id}, not `{}` (at {}): a deployment keeps the \
                             model its evidence was measured with",
                            row.model.name, row.model.dir
                        )));
                    }
                    row
                }
            };
            Some(row)
        }
    };
    if let Some(m) = &model {
        if let Some(ret) = &m.retired {
            return Err(LabError::Refused(format!(
                "model `{}` was retired by {} ({}): it may not be promoted",
                m.model.name, ret.by, ret.reason
            )));
        }
        check_online(&exp.dataset, m)?;
    }

    let backtest = exp.config.get("backtest").cloned().unwrap_or(Value::Null);
    let d = NewDeployment {
        name: r.name.clone(),
        experiment_id: Some(exp.id),
        experiment_name: Some(exp.name.clone()),
        fold: Some(run.fold as u32),
        strategy: exp.strategy.clone(),
        params: run.params.clone(),
        backtest,
        model_id: model.as_ref().map(|m| m.id),
        model_name: model.as_ref().map(|m| m.model.name.clone()),
        model_hash: model.as_ref().map(|m| m.model.content_hash.clone()),
        risk: serde_json::to_value(&r.risk).map_err(|source| LabError::Json {
            what: "the risk limits".into(),
            source,
        })?,
        evidence,
        forced: !better,
        dexlab_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: r.git_commit.clone(),
        created_by: r.by.clone(),
        created_at: r.at,
        note: r.note.clone(),
    };
    Ok(store.add_deployment(&d).await?)
}

/// The weights file of a model directory (`dexlab_models::artifact::WEIGHTS`).
const WEIGHTS: &str = "model.bpk";

/// How an experiment names the model it ran with: the directory's name and the first 12 hex
/// digits of its weights' SHA-256 (`dexlab_models::scorer::ModelScorer`'s id); `None` when the
/// weights cannot be read.
fn weights_id(dir: &std::path::Path) -> Option<String> {
    use sha2::Digest;
    let bytes = std::fs::read(dir.join(WEIGHTS)).ok()?;
    let name = dir.file_name()?.to_string_lossy().into_owned();
    let hash = hex::encode(sha2::Sha256::digest(&bytes));
    Some(format!("{name}@{}", &hash[..12]))
}

/// The registry row whose directory holds the model the experiment names `id`.
async fn find_model_of_id(store: &Store, id: &str) -> Result<Option<ModelRow>> {
    let rows = store.list_models().await?;
    Ok(rows
        .into_iter()
        .find(|r| weights_id(std::path::Path::new(&r.model.dir)).as_deref() == Some(id)))
}

#[cfg(all(test, feature = "models"))]
mod tests {
    #[test]
    fn the_weights_file_is_the_models_crates() {
        assert_eq!(super::WEIGHTS, dexlab_models::artifact::WEIGHTS);
    }
}

/// Refuses a model that reads a column the online code cannot compute on the dataset's pools.
fn check_online(dataset: &str, m: &ModelRow) -> Result<()> {
    let meta = dexlab_data::dataset::read_meta(std::path::Path::new(dataset)).map_err(|e| {
        LabError::Refused(format!(
            "the experiment's dataset {dataset} cannot be read to check model `{}`'s features \
             against its pools: {e}",
            m.model.name
        ))
    })?;
    let (metas, _) = dexlab_engine::tape::initial_market(&meta.pools, &[])
        .map_err(|e| LabError::Refused(format!("the experiment's dataset {dataset}: {e}")))?;
    dexlab_strategy::online::OnlineFeatures::new(
        &metas,
        &m.model.features,
        m.model.window.max(1) as usize,
    )
    .map_err(|e| {
        LabError::Refused(format!(
            "model `{}` cannot be served online: {e}",
            m.model.name
        ))
    })?;
    Ok(())
}
