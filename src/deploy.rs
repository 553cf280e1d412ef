//! `dexlab promote` and `dexlab deployments`: from an experiment to a named deployment that paper
//! and live sessions run (`dexlab live --deployment NAME`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use dexlab_lab::{Access, open_store};
use dexlab_store::DeploymentRow;

#[derive(Args)]
pub struct PromoteArgs {
    /// The experiment, by name or id.
    pub experiment: String,
    /// The walk-forward fold whose tuned parameters to deploy [default: the last, fitted on the
    /// most recent data].
    #[arg(long)]
    pub fold: Option<u32>,
    /// The model (registry name or id) [default: the one the experiment ran with].
    #[arg(long)]
    pub model: Option<String>,
    /// Risk limits (`examples/risk.toml` lists every key and its default).
    #[arg(long)]
    pub risk: PathBuf,
    /// The deployment's name; promoting to an existing name adds a version.
    #[arg(long)]
    pub name: String,
    /// Promote even if the experiment's out-of-sample result is not better than not trading
    /// (recorded in the deployment).
    #[arg(long)]
    pub force: bool,
    /// A note kept with the deployment.
    #[arg(long)]
    pub note: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum DeploymentsCmd {
    /// Every deployment version, newest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One deployment: its current version (or `--version N`) in full, and its history.
    Show {
        name: String,
        #[arg(long)]
        version: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// Put the version in force before the current one back in force, as a new version (rows
    /// are never deleted). A running session picks it up at its next block.
    Rollback {
        name: String,
        #[arg(long)]
        note: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `user@host`, who promoted or rolled back.
pub(crate) fn who() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("{user}@{}", dexlab_lab::experiments::host_name())
}

pub async fn promote_cmd(a: PromoteArgs) -> anyhow::Result<ExitCode> {
    let risk = dexlab_engine::risk::RiskLimits::load(&a.risk)
        .map_err(|e| anyhow::anyhow!("--risk {e}"))?;
    let store = open_store(Access::Write).await?;
    let req = dexlab_lab::promote::PromoteRequest {
        experiment: a.experiment,
        fold: a.fold,
        model: a.model,
        risk,
        name: a.name,
        force: a.force,
        by: who(),
        note: a.note,
        at: unix_now(),
        git_commit: dexlab_models::artifact::git_commit(),
    };
    let row = dexlab_lab::promote::promote(&store, &req).await?;
    print_row(&row, a.json)?;
    Ok(ExitCode::SUCCESS)
}

fn print_row(row: &DeploymentRow, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(row)?);
        return Ok(());
    }
    let d = &row.deployment;
    println!(
        "deployment {} v{}: {} {} (experiment {}, fold {}){}{}",
        d.name,
        row.version,
        d.strategy,
        d.params,
        d.experiment_name.as_deref().unwrap_or("-"),
        d.fold.map_or("-".into(), |f| f.to_string()),
        d.model_name
            .as_deref()
            .map(|m| format!(", model {m}"))
            .unwrap_or_default(),
        row.rollback_of
            .map(|v| format!(", restores v{v}"))
            .unwrap_or_default(),
    );
    let pnl = &d.evidence["out_of_sample_net_pnl_quote"];
    println!(
        "  out of sample, net PnL (quote): tuned {} | no trade {} | random search {} | defaults {}{}",
        pnl["ga"],
        pnl["no_trade"],
        pnl["random_search"],
        pnl["default"],
        if d.forced {
            "  (FORCED: not better than not trading)"
        } else {
            ""
        }
    );
    println!("  risk {}", d.risk);
    println!(
        "  by {} at {} (dexlab {}, {})",
        d.created_by, d.created_at, d.dexlab_version, d.git_commit
    );
    Ok(())
}

pub async fn deployments_cmd(c: DeploymentsCmd) -> anyhow::Result<ExitCode> {
    match c {
        DeploymentsCmd::List { json } => {
            let store = open_store(Access::Read).await?;
            let rows = store.list_deployments().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!(
                    "no deployments in {} (`dexlab promote` makes one)",
                    store.url()
                );
            } else {
                for r in &rows {
                    let d = &r.deployment;
                    println!(
                        "{:<20} v{:<3} {:<18} {:<24} by {} at {}{}",
                        d.name,
                        r.version,
                        d.strategy,
                        d.model_name.as_deref().unwrap_or("-"),
                        d.created_by,
                        d.created_at,
                        r.rollback_of
                            .map(|v| format!(" (rollback to v{v})"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        DeploymentsCmd::Show {
            name,
            version,
            json,
        } => {
            let store = open_store(Access::Read).await?;
            let history = store.deployment_versions(&name).await?;
            let row = match version {
                Some(v) => history.iter().find(|r| r.version == v),
                None => history.first(),
            }
            .with_context(|| match version {
                Some(v) => format!("deployment {name} has no version {v}"),
                None => format!(
                    "no deployment {name} in {} (`dexlab deployments list`)",
                    store.url()
                ),
            })?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "deployment": row,
                        "history": history,
                    }))?
                );
            } else {
                print_row(row, false)?;
                println!(
                    "  history: {}",
                    history
                        .iter()
                        .map(|r| format!(
                            "v{} by {} at {}",
                            r.version, r.deployment.created_by, r.deployment.created_at
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        DeploymentsCmd::Rollback { name, note, json } => {
            let store = open_store(Access::Write).await?;
            let row = store
                .rollback_deployment(&name, &who(), unix_now(), note.as_deref())
                .await?;
            print_row(&row, json)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
