//! Promoted deployments: what a paper or live session runs when given a name.
//!
//! `dexlab promote` turns an experiment's result into a deployment: a name with numbered
//! versions, each recording the strategy, its parameters and backtest settings, the model, the
//! risk limits, and the evidence the promotion was judged on. Promoting to a name adds version
//! max + 1 ([`Store::add_deployment`]); the highest version is the one in force
//! ([`Store::current_deployment`]). A rollback ([`Store::rollback_deployment`]) adds a version
//! too, restoring the content of the one the current version replaced. Rows are never changed or
//! deleted: they are the deployment's history.
//!
//! Each new version is read and written in one transaction. On SQLite the transaction holds the
//! write lock from its start (`BEGIN IMMEDIATE`), so writers queue. On PostgreSQL two promotions
//! of one name at once can both pick the same next version; the unique `(name, version)` key
//! refuses the second, which reads the new current version and tries again.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Transaction};

use crate::models::{check_name_of, retired_from_row};
use crate::url::Backend;
use crate::{Result, Store, StoreError, db, get, json_column, to_json};

/// Attempts at a new version before [`StoreError::VersionContention`]: each failed attempt means
/// another writer's version was committed, so this many writers at once always get through.
const ATTEMPTS: u32 = 32;

/// Every column, in the order of `deployment_from_row`, as a literal for `concat!`.
macro_rules! deployment_columns {
    () => {
        "id, name, version, experiment_id, experiment_name, fold, strategy, params, backtest,
         model_id, model_name, model_hash, risk, evidence, forced, replaces, rollback_of,
         dexlab_version, git_commit, created_by, created_at, note"
    };
}

/// The start of every query that feeds `deployment_from_row`.
macro_rules! select_deployments {
    () => {
        concat!("SELECT ", deployment_columns!(), " FROM deployments ")
    };
}

/// What `check_model` reads of a model.
macro_rules! select_model_state {
    () => {
        "SELECT name, retired_at, retired_by, retired_reason FROM models WHERE id = $1"
    };
}

/// A deployment version about to be added: what it runs and why it was promoted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDeployment {
    /// What sessions name to run it; not empty, no surrounding whitespace, not all digits.
    pub name: String,
    /// The experiment it was promoted from, by id and by name.
    pub experiment_id: Option<i64>,
    pub experiment_name: Option<String>,
    /// The walk-forward fold whose run it takes its parameters from.
    pub fold: Option<u32>,
    pub strategy: String,
    /// The strategy's parameters.
    pub params: Value,
    /// The experiment's execution config (fees, gas, latency, sizes).
    pub backtest: Value,
    /// The registered model it reads, by id, name and content hash; a retired model is refused.
    pub model_id: Option<i64>,
    pub model_name: Option<String>,
    pub model_hash: Option<String>,
    /// The risk limits sessions run it under.
    pub risk: Value,
    /// The out-of-sample figures and baselines the promotion was judged on.
    pub evidence: Value,
    /// Promoted although the evidence did not show it better than its baselines.
    pub forced: bool,
    /// The dexlab version and `git rev-parse HEAD` (or `"unknown"`) that promoted it.
    pub dexlab_version: String,
    pub git_commit: String,
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
    pub note: Option<String>,
}

/// A stored deployment version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentRow {
    pub id: i64,
    /// 1 for a name's first version, then one more for each promotion or rollback.
    pub version: u32,
    /// The version in force when this one was added; `None` for the first. For a rollback, the
    /// version the restored one had replaced, so that rolling back again goes further back.
    pub replaces: Option<u32>,
    /// For a rollback, the version whose content it restores.
    pub rollback_of: Option<u32>,
    #[serde(flatten)]
    pub deployment: NewDeployment,
}

impl Store {
    /// Adds the next version of deployment `d.name` (1 for a new name) and returns it; the
    /// version it replaces is the one that was current.
    ///
    /// A name that is empty, has surrounding whitespace or is all digits is
    /// [`StoreError::InvalidName`]. A model that is retired is [`StoreError::ModelRetired`]; one
    /// that is not registered, like an unknown experiment, is [`StoreError::NotFound`].
    pub async fn add_deployment(&self, d: &NewDeployment) -> Result<DeploymentRow> {
        const OP: &str = "add_deployment";
        check_name_of(OP, "deployment", &d.name)?;
        let target = || format!("deployment `{}`", d.name);
        let encoded = Encoded::new(OP, &target, d)?;
        for _ in 0..ATTEMPTS {
            let mut tx = self.begin_write(OP, target).await?;
            self.check_references(OP, &mut tx, d).await?;
            let current = current_in(OP, &mut tx, &d.name).await?;
            let replaces = current.map(|c| c.version);
            let version = next_version(OP, &d.name, replaces)?;
            // A taken version: another writer's is in; drop (roll back) and read again.
            if let Some(row) = insert(OP, &mut tx, &encoded, version, replaces, None).await? {
                tx.commit().await.map_err(db(OP, target))?;
                return Ok(row);
            }
        }
        Err(StoreError::VersionContention {
            op: OP,
            name: d.name.clone(),
            attempts: ATTEMPTS,
        })
    }

    /// Rolls deployment `name` back: adds a version restoring the content of the version the
    /// current one replaced (call it P), recording `created_by`, `created_at` and `note`, with
    /// `rollback_of` P and `replaces` what P replaced, so that a second rollback restores the
    /// version before P. Returns the new version.
    ///
    /// An unknown name is [`StoreError::NotFound`]; a current version that replaced nothing is
    /// [`StoreError::NothingToRollBack`]; P's model retired since is
    /// [`StoreError::ModelRetired`] (a rollback deploys it again).
    pub async fn rollback_deployment(
        &self,
        name: &str,
        created_by: &str,
        created_at: i64,
        note: Option<&str>,
    ) -> Result<DeploymentRow> {
        const OP: &str = "rollback_deployment";
        let target = || format!("deployment `{name}`");
        for _ in 0..ATTEMPTS {
            let mut tx = self.begin_write(OP, target).await?;
            let current =
                current_in(OP, &mut tx, name)
                    .await?
                    .ok_or_else(|| StoreError::NotFound {
                        op: OP,
                        target: target(),
                    })?;
            let Some(previous) = current.replaces else {
                return Err(StoreError::NothingToRollBack {
                    op: OP,
                    name: name.to_owned(),
                    version: current.version,
                });
            };
            let restored = version_in(OP, &mut tx, name, previous)
                .await?
                .ok_or_else(|| StoreError::Corrupt {
                    op: OP,
                    target: format!("deployment `{name}` version {}", current.version),
                    field: "replaces",
                    detail: format!("version {previous} is not stored"),
                })?;
            let d = NewDeployment {
                created_by: created_by.to_owned(),
                created_at,
                note: note.map(str::to_owned),
                ..restored.deployment
            };
            self.check_references(OP, &mut tx, &d).await?;
            let encoded = Encoded::new(OP, &target, &d)?;
            let version = next_version(OP, name, Some(current.version))?;
            let row = insert(
                OP,
                &mut tx,
                &encoded,
                version,
                restored.replaces,
                Some(restored.version),
            )
            .await?;
            if let Some(row) = row {
                tx.commit().await.map_err(db(OP, target))?;
                return Ok(row);
            }
        }
        Err(StoreError::VersionContention {
            op: OP,
            name: name.to_owned(),
            attempts: ATTEMPTS,
        })
    }

    /// Every deployment version of every name, newest first (by id).
    pub async fn list_deployments(&self) -> Result<Vec<DeploymentRow>> {
        const OP: &str = "list_deployments";
        let rows = sqlx::query(concat!(select_deployments!(), "ORDER BY id DESC"))
            .fetch_all(&self.pool)
            .await
            .map_err(db(OP, || "all deployments".to_owned()))?;
        rows.iter()
            .map(|row| deployment_from_row(OP, row))
            .collect()
    }

    /// Deployment `name`'s versions, newest first; empty for an unknown name.
    pub async fn deployment_versions(&self, name: &str) -> Result<Vec<DeploymentRow>> {
        const OP: &str = "deployment_versions";
        let rows = sqlx::query(concat!(
            select_deployments!(),
            "WHERE name = $1 ORDER BY version DESC"
        ))
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(db(OP, || format!("deployment `{name}`")))?;
        rows.iter()
            .map(|row| deployment_from_row(OP, row))
            .collect()
    }

    /// The version of deployment `name` in force: its highest.
    pub async fn current_deployment(&self, name: &str) -> Result<Option<DeploymentRow>> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(db("current_deployment", || format!("deployment `{name}`")))?;
        current_in("current_deployment", &mut conn, name).await
    }

    /// Version `version` of deployment `name`.
    pub async fn deployment(&self, name: &str, version: u32) -> Result<Option<DeploymentRow>> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(db("deployment", || format!("deployment `{name}`")))?;
        version_in("deployment", &mut conn, name, version).await
    }

    /// A transaction that may add a version. On SQLite it takes the write lock at once: a
    /// deferred one that read first could not write once another writer had committed.
    pub(crate) async fn begin_write(
        &self,
        op: &'static str,
        target: impl Fn() -> String,
    ) -> Result<Transaction<'static, Any>> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        };
        tx.map_err(db(op, target))
    }

    /// The experiment and model `d` refers to exist and the model is not retired. On PostgreSQL
    /// the model's row stays locked until the transaction ends, so that it cannot be retired
    /// between this check and the commit.
    async fn check_references(
        &self,
        op: &'static str,
        conn: &mut AnyConnection,
        d: &NewDeployment,
    ) -> Result<()> {
        if let Some(id) = d.experiment_id {
            let found: Option<i64> = sqlx::query_scalar("SELECT id FROM experiments WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db(op, || format!("experiment {id}")))?;
            if found.is_none() {
                return Err(StoreError::NotFound {
                    op,
                    target: match &d.experiment_name {
                        Some(name) => format!("experiment {id} (`{name}`)"),
                        None => format!("experiment {id}"),
                    },
                });
            }
        }
        let Some(id) = d.model_id else {
            return Ok(());
        };
        let target = || match &d.model_name {
            Some(name) => format!("model {id} (`{name}`)"),
            None => format!("model {id}"),
        };
        let sql = match self.backend {
            Backend::Sqlite => select_model_state!(),
            Backend::Postgres => concat!(select_model_state!(), " FOR SHARE"),
        };
        let row = sqlx::query(sql)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db(op, target))?
            .ok_or_else(|| StoreError::NotFound {
                op,
                target: target(),
            })?;
        match retired_from_row(op, &row, target)? {
            None => Ok(()),
            Some(r) => Err(StoreError::ModelRetired {
                op,
                id,
                name: get(op, &row, "name")?,
                at: r.at,
                by: r.by,
                reason: r.reason,
                consequence: "a retired model may not be deployed",
            }),
        }
    }
}

/// A deployment's JSON and optional integers, ready to bind.
struct Encoded<'a> {
    d: &'a NewDeployment,
    params: String,
    backtest: String,
    risk: String,
    evidence: String,
}

impl<'a> Encoded<'a> {
    fn new(op: &'static str, target: &dyn Fn() -> String, d: &'a NewDeployment) -> Result<Self> {
        Ok(Encoded {
            d,
            params: to_json(op, target, "params", &d.params)?,
            backtest: to_json(op, target, "backtest", &d.backtest)?,
            risk: to_json(op, target, "risk", &d.risk)?,
            evidence: to_json(op, target, "evidence", &d.evidence)?,
        })
    }
}

/// The version after `current` (1 when there is none).
fn next_version(op: &'static str, name: &str, current: Option<u32>) -> Result<u32> {
    match current {
        None => Ok(1),
        Some(v) => v.checked_add(1).ok_or_else(|| StoreError::Corrupt {
            op,
            target: format!("deployment `{name}`"),
            field: "version",
            detail: format!("version {v} is the last a deployment can have"),
        }),
    }
}

/// Inserts version `version` of `e`; `None` when that version is taken (a unique violation, left
/// for the caller to roll back and retry).
async fn insert(
    op: &'static str,
    conn: &mut AnyConnection,
    e: &Encoded<'_>,
    version: u32,
    replaces: Option<u32>,
    rollback_of: Option<u32>,
) -> Result<Option<DeploymentRow>> {
    let d = e.d;
    let inserted = sqlx::query(concat!(
        "INSERT INTO deployments (name, version, experiment_id, experiment_name, fold, strategy,
                                  params, backtest, model_id, model_name, model_hash, risk,
                                  evidence, forced, replaces, rollback_of, dexlab_version,
                                  git_commit, created_by, created_at, note)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                 $19, $20, $21)
         RETURNING ",
        deployment_columns!()
    ))
    .bind(&d.name)
    .bind(i64::from(version))
    .bind(d.experiment_id)
    .bind(d.experiment_name.as_deref())
    .bind(d.fold.map(i64::from))
    .bind(&d.strategy)
    .bind(e.params.as_str())
    .bind(e.backtest.as_str())
    .bind(d.model_id)
    .bind(d.model_name.as_deref())
    .bind(d.model_hash.as_deref())
    .bind(e.risk.as_str())
    .bind(e.evidence.as_str())
    .bind(i64::from(d.forced))
    .bind(replaces.map(i64::from))
    .bind(rollback_of.map(i64::from))
    .bind(&d.dexlab_version)
    .bind(&d.git_commit)
    .bind(&d.created_by)
    .bind(d.created_at)
    .bind(d.note.as_deref())
    .fetch_one(&mut *conn)
    .await;
    match inserted {
        Ok(row) => deployment_from_row(op, &row).map(Some),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(None),
        Err(other) => Err(db(op, || {
            format!("deployment `{}` version {version}", d.name)
        })(other)),
    }
}

/// The highest version of `name`, read on `conn` (inside the caller's transaction, if any).
async fn current_in(
    op: &'static str,
    conn: &mut AnyConnection,
    name: &str,
) -> Result<Option<DeploymentRow>> {
    let row = sqlx::query(concat!(
        select_deployments!(),
        "WHERE name = $1 ORDER BY version DESC LIMIT 1"
    ))
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db(op, || format!("deployment `{name}`")))?;
    row.map(|row| deployment_from_row(op, &row)).transpose()
}

async fn version_in(
    op: &'static str,
    conn: &mut AnyConnection,
    name: &str,
    version: u32,
) -> Result<Option<DeploymentRow>> {
    let row = sqlx::query(concat!(
        select_deployments!(),
        "WHERE name = $1 AND version = $2"
    ))
    .bind(name)
    .bind(i64::from(version))
    .fetch_optional(&mut *conn)
    .await
    .map_err(db(op, || format!("deployment `{name}` version {version}")))?;
    row.map(|row| deployment_from_row(op, &row)).transpose()
}

fn deployment_from_row(op: &'static str, row: &AnyRow) -> Result<DeploymentRow> {
    let id: i64 = get(op, row, "id")?;
    let target = || format!("deployment {id}");
    let corrupt = |field, detail| StoreError::Corrupt {
        op,
        target: target(),
        field,
        detail,
    };
    let small = |column: &'static str| -> Result<Option<u32>> {
        let value: Option<i64> = get(op, row, column)?;
        value
            .map(|v| u32::try_from(v).map_err(|_| corrupt(column, format!("{column} {v}"))))
            .transpose()
    };
    let forced: i64 = get(op, row, "forced")?;
    Ok(DeploymentRow {
        id,
        version: small("version")?.ok_or_else(|| corrupt("version", "no version".to_owned()))?,
        replaces: small("replaces")?,
        rollback_of: small("rollback_of")?,
        deployment: NewDeployment {
            name: get(op, row, "name")?,
            experiment_id: get(op, row, "experiment_id")?,
            experiment_name: get(op, row, "experiment_name")?,
            fold: small("fold")?,
            strategy: get(op, row, "strategy")?,
            params: json_column(op, row, "params", target)?,
            backtest: json_column(op, row, "backtest", target)?,
            model_id: get(op, row, "model_id")?,
            model_name: get(op, row, "model_name")?,
            model_hash: get(op, row, "model_hash")?,
            risk: json_column(op, row, "risk", target)?,
            evidence: json_column(op, row, "evidence", target)?,
            forced: match forced {
                0 => false,
                1 => true,
                other => return Err(corrupt("forced", format!("forced {other}, not 0 or 1"))),
            },
            dexlab_version: get(op, row, "dexlab_version")?,
            git_commit: get(op, row, "git_commit")?,
            created_by: get(op, row, "created_by")?,
            created_at: get(op, row, "created_at")?,
            note: get(op, row, "note")?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_serialises_flat_and_back() {
        let row = DeploymentRow {
            id: 7,
            version: 3,
            replaces: Some(1),
            rollback_of: Some(2),
            deployment: NewDeployment {
                name: "arb".into(),
                experiment_id: Some(4),
                experiment_name: Some("sweep".into()),
                fold: Some(2),
                strategy: "cross_venue_arb".into(),
                params: serde_json::json!({"z": 0.1 + 0.2}),
                backtest: serde_json::json!({"fee_bps": 30}),
                model_id: None,
                model_name: None,
                model_hash: None,
                risk: serde_json::json!({"max_position_quote": 1000}),
                evidence: serde_json::json!({"ga": 12.5}),
                forced: true,
                dexlab_version: "0.9.0".into(),
                git_commit: "0bd467e".into(),
                created_by: "alice".into(),
                created_at: 10,
                note: None,
            },
        };
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["version"], 3);
        assert_eq!(json["rollback_of"], 2);
        assert_eq!(json["name"], "arb");
        assert_eq!(json["forced"], true);
        assert!(json.get("deployment").is_none(), "{json}");
        let back: DeploymentRow = serde_json::from_value(json).unwrap();
        assert_eq!(back, row);
    }

    #[test]
    fn the_version_after_the_last_is_refused() {
        assert_eq!(next_version("t", "arb", None).unwrap(), 1);
        assert_eq!(next_version("t", "arb", Some(41)).unwrap(), 42);
        let err = next_version("t", "arb", Some(u32::MAX)).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }
}
