//! dexlab's experiment store: experiments, folds, runs, GA generations and results, the registry
//! of trained models, the registry of trading sessions, and promoted deployments, in SQL.
//!
//! One code path serves both databases through sqlx's `Any` driver: every statement is written
//! once, in the SQL both dialects share (`$n` placeholders, `ON CONFLICT … DO UPDATE`,
//! `RETURNING`). SQLite (a file) is the default; PostgreSQL is used when the URL says
//! `postgres://` or `postgresql://`. Only the schema differs, so there are two numbered migration
//! directories, `migrations/sqlite` and `migrations/postgres`, embedded with `sqlx::migrate!` and
//! applied at [`Store::connect`]. Values are stored plainly: JSON payloads as TEXT, u64 seeds as
//! decimal TEXT, block numbers as BIGINT, and f64 so that the exact bits come back (DOUBLE
//! PRECISION on PostgreSQL; untyped columns on SQLite, whose REAL would turn -0.0 into 0.0). NaN
//! and infinities are refused before anything is written. Errors name the operation and the
//! experiment or run involved, and URLs are scrubbed of passwords before they are printed
//! anywhere (errors and `Debug`).
//!
//! The model registry ([`Store::register_model`], in `models.rs`) keeps one row per model
//! directory with its provenance and test metrics; a name and a directory each belong to one
//! model, and [`content_hash`] tells whether a directory still holds what was registered. A model
//! taken out of service is retired ([`Store::retire_model`]): its row stays, but it may not be
//! deployed again.
//!
//! The session registry ([`Store::start_session`], in `sessions.rs`) keeps one row per paper or
//! live trading session folder: what it runs, its status and progress, and the process that last
//! ran it. Starting a session in a registered folder resumes its row, and is refused when the row
//! records another session.
//!
//! Deployments ([`Store::add_deployment`], in `deployments.rs`) are what `dexlab promote` makes
//! of an experiment: named, versioned records of a strategy, its parameters, model and risk
//! limits and the evidence for it, never changed or deleted; a rollback adds a version that
//! restores an earlier one's content.
//!
//! The dashboard and API server's accounts ([`Store::add_user`], in `accounts.rs`) live here
//! too, with their rotating refresh-token families, revoked whole when a token is reused
//! ([`Store::use_refresh_token`]), and an append-only audit log ([`Store::add_audit`]).
//!
//! No cargo features.

mod accounts;
mod backup;
mod deployments;
mod error;
mod events;
mod experiment_list;
mod jobs;
mod models;
mod risk;
mod sessions;
mod url;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Connection, Row};

pub use crate::accounts::{
    AuditRow, MAX_USERNAME_CHARS, NewAudit, NewRefreshToken, NewUser, RefreshTokenRow, RefreshUse,
    Role, UserRow,
};
pub use crate::deployments::{DeploymentRow, NewDeployment};
pub use crate::error::StoreError;
pub use crate::events::{LIVE_CHANNEL, LiveEventRow, LiveListener};
pub use crate::experiment_list::{ExperimentFilter, ExperimentListRow, ExperimentOrder};
pub use crate::jobs::{JobEnd, JobKind, JobRow, JobState, NewJob};
pub use crate::models::{
    ModelRow, NewModel, Retired, content_hash, validate_experiment_name, validate_model_name,
};
pub use crate::risk::{RiskCommand, RiskCommandRow, TRIPS};
pub use crate::sessions::{NewSessionRow, SessionProgress, SessionRow};
pub use crate::url::scrub_url;
use crate::url::{Backend, resolve};
pub use dexlab_types::{
    ExperimentStatus, RegisteredKind, RegisteredTask, RunKind, SessionMode, SessionStatus,
};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// How long [`Store::connect`] waits for the first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Rows per multi-row `INSERT` of individuals: 3 parameters each, well within both databases'
/// limits on parameters per statement.
const INDIVIDUALS_PER_INSERT: usize = 250;

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The start of every query that feeds `experiment_from_row`, as a literal for `concat!`.
macro_rules! select_experiments {
    () => {
        "SELECT id, name, strategy, dataset, dataset_hash, config, seed, status, summary, created_at,
                error, pid, host, heartbeat_at
         FROM experiments "
    };
}

/// A handle on the experiment store. Cheap to clone (a shared connection pool).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Already scrubbed.
    url: Arc<str>,
    /// As given, credentials included: only for a second connection of the same database
    /// (PostgreSQL's LISTEN). Never printed.
    raw_url: Arc<str>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend.name())
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// An experiment about to be created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewExperiment {
    pub name: String,
    pub strategy: String,
    pub dataset: String,
    pub dataset_hash: String,
    pub config: Value,
    pub seed: u64,
    /// Unix seconds.
    pub created_at: i64,
}

/// A stored experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentRow {
    pub id: i64,
    pub name: String,
    pub strategy: String,
    pub dataset: String,
    pub dataset_hash: String,
    pub config: Value,
    pub seed: u64,
    /// [`ExperimentStatus::Running`] at creation.
    pub status: ExperimentStatus,
    pub summary: Option<Value>,
    /// Unix seconds.
    pub created_at: i64,
    /// Why the run failed or stopped (status `failed` or `interrupted`).
    pub error: Option<String>,
    /// The process running it (see [`Store::mark_running`]).
    pub pid: Option<i64>,
    pub host: Option<String>,
    /// Unix seconds when the running process last reported progress.
    pub heartbeat_at: Option<i64>,
}

/// The process that runs an experiment, recorded so that a reader can tell a live run from one
/// whose process is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runner {
    pub pid: i64,
    pub host: String,
    /// Unix seconds.
    pub at: i64,
}

/// One walk-forward fold: its train and test block ranges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldRow {
    pub experiment_id: i64,
    pub fold: i32,
    pub train_from: u64,
    pub train_to: u64,
    pub test_from: u64,
    pub test_to: u64,
}

/// A run about to be created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRun {
    pub experiment_id: i64,
    pub fold: i32,
    pub kind: RunKind,
    pub params: Value,
    pub train_objective: Option<f64>,
    pub test_objective: Option<f64>,
}

/// A stored run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    pub id: i64,
    pub experiment_id: i64,
    pub fold: i32,
    pub kind: RunKind,
    pub params: Value,
    pub train_objective: Option<f64>,
    pub test_objective: Option<f64>,
}

/// Summary statistics of one GA generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRow {
    pub run_id: i64,
    pub generation: i32,
    pub best: f64,
    pub mean: f64,
    pub worst: f64,
    pub evaluations: i64,
}

/// One member of a generation's population.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndividualRow {
    pub idx: i32,
    pub params: Value,
    pub fitness: f64,
}

/// One point of a stored equity curve: what the `equity_curves` table keeps of a
/// [`dexlab_types::EquityPoint`] (no timestamp).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EquityPoint {
    pub block: u64,
    pub equity: f64,
}

impl From<&dexlab_types::EquityPoint> for EquityPoint {
    fn from(p: &dexlab_types::EquityPoint) -> Self {
        EquityPoint {
            block: p.block,
            equity: p.equity,
        }
    }
}

/// Everything stored about one experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentDetail {
    pub experiment: ExperimentRow,
    /// By fold.
    pub folds: Vec<FoldRow>,
    /// By id (creation order).
    pub runs: Vec<RunRow>,
    /// By run id, then generation.
    pub generations: Vec<GenerationRow>,
    /// `(run_id, population)` of the last stored generation of each run that has generations,
    /// by run id; each population by `idx`.
    pub final_population: Vec<(i64, Vec<IndividualRow>)>,
    /// `(run_id, window, metrics)`, by run id then window.
    pub metrics: Vec<(i64, String, Value)>,
    /// `(run_id, window, points)`, by run id then window.
    pub equity: Vec<(i64, String, Vec<EquityPoint>)>,
}

/// Holds `{db}-migrate-lock` exclusively until dropped; waits for another process's migration.
async fn migration_lock(
    db: &Path,
) -> std::result::Result<std::fs::File, (PathBuf, std::io::Error)> {
    let mut name = db.as_os_str().to_owned();
    name.push("-migrate-lock");
    let path = PathBuf::from(name);
    let for_task = path.clone();
    // Blocking while another process migrates: off the async threads, which that wait would
    // otherwise stall (a migration in this process included).
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&for_task)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(|join| (path.clone(), std::io::Error::other(join)))?
    .map_err(|source| (path, source))
}

impl Store {
    /// Opens the store at `url` and brings its schema up to date.
    ///
    /// `postgres://…` and `postgresql://…` are PostgreSQL; `sqlite:…` URLs and bare file paths
    /// are SQLite, whose file (and parent directories) are created if missing. Applying the
    /// migrations again is a no-op.
    pub async fn connect(url: &str) -> Result<Store> {
        Self::open(url, true).await
    }

    /// Opens an existing store, for commands that only read it: a SQLite file that does not
    /// exist (or whose folder does not) is [`StoreError::NoStore`] and nothing is created. The
    /// schema of an existing store is brought up to date as by [`Store::connect`].
    pub async fn open_existing(url: &str) -> Result<Store> {
        Self::open(url, false).await
    }

    async fn open(url: &str, create: bool) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let shown = scrub_url(url);
        let mut target =
            resolve(url).ok_or_else(|| StoreError::UnsupportedUrl { url: shown.clone() })?;
        if !create && let Some(file) = target.file.clone() {
            let missing = |reason: String| StoreError::NoStore {
                path: file.clone(),
                url: shown.clone(),
                reason,
            };
            let parent = file.parent().filter(|d| !d.as_os_str().is_empty());
            if let Some(dir) = parent.filter(|d| !d.is_dir()) {
                return Err(missing(format!(
                    "its folder {} does not exist",
                    dir.display()
                )));
            }
            if !file.is_file() {
                return Err(missing(format!("{} does not exist", file.display())));
            }
            // Open only; never create, even if the file goes away meanwhile.
            target.url = target.url.replace("mode=rwc", "mode=rw");
        }
        let backend = target.backend;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        let connect_err = |source| StoreError::Connect {
            backend: backend.name(),
            url: shown.clone(),
            source,
        };
        let migrate_err = |source| StoreError::Migrate {
            backend: backend.name(),
            url: shown.clone(),
            source,
        };

        // sqlx's migrator locks PostgreSQL (an advisory lock) but not SQLite: two processes
        // opening a new file at once would both apply the first migration, and one would fail;
        // and switching a new file to WAL while another connection does the same can fail at
        // once with "database is locked". An exclusive lock on a sibling file serialises the
        // whole first connection, WAL switch and migration (not on the database file itself:
        // closing any handle to it would drop SQLite's own POSIX locks in this process).
        let mut migrating = None;
        let pool = if backend == Backend::Sqlite && target.file.is_none() {
            // In-memory SQLite: every new connection would be a new, empty database, so the
            // pool holds exactly one, forever.
            AnyPoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect(&target.url)
                .await
                .map_err(connect_err)?
        } else {
            if let Some(dir) = target
                .file
                .as_deref()
                .and_then(Path::parent)
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                    path: dir.to_owned(),
                    url: shown.clone(),
                    source,
                })?;
            }
            if let Some(db) = target
                .file
                .as_deref()
                .filter(|_| backend == Backend::Sqlite)
            {
                migrating = Some(migration_lock(db).await.map_err(|(path, source)| {
                    StoreError::MigrationLock {
                        path,
                        url: shown.clone(),
                        source,
                    }
                })?);
            }
            // A pool retries refused connections until its timeout and then reports only that
            // it timed out; one direct connection first surfaces the real cause.
            let mut conn =
                tokio::time::timeout(CONNECT_TIMEOUT, AnyConnection::connect(&target.url))
                    .await
                    .map_err(|_| StoreError::ConnectTimeout {
                        backend: backend.name(),
                        url: shown.clone(),
                        seconds: CONNECT_TIMEOUT.as_secs(),
                    })?
                    .map_err(connect_err)?;
            if backend == Backend::Sqlite {
                // Lets readers (report, server) work while a run writes; stored in the file.
                sqlx::query("PRAGMA journal_mode = WAL")
                    .fetch_optional(&mut conn)
                    .await
                    .map_err(connect_err)?;
            }
            conn.close().await.map_err(connect_err)?;
            AnyPoolOptions::new()
                .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
                .connect_lazy(&target.url)
                .map_err(connect_err)?
        };
        // Through the pool rather than the connection above: `Migrator::run` on a
        // `&mut AnyConnection` makes this future unusable with `tokio::spawn` ("implementation
        // of `Acquire` is not general enough").
        migrator.run(&pool).await.map_err(migrate_err)?;
        drop(migrating);
        Ok(Store {
            pool,
            backend,
            url: shown.into(),
            raw_url: url.into(),
        })
    }

    /// `$DATABASE_URL` if set and non-empty, else the SQLite file `{workdir}/dexlab.sqlite`.
    pub fn url_from_env(workdir: &Path) -> String {
        url_from(std::env::var("DATABASE_URL").ok().as_deref(), workdir)
    }

    /// Asks the database a trivial query: `Ok` when it answers (a server's readiness).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db("ping", || "the store".to_owned()))?;
        Ok(())
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        self.backend.name()
    }

    /// The URL this store was opened with, password scrubbed.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL this store was opened with, as given: it may hold a password. For handing the
    /// same store to a child process (its `DATABASE_URL`); never log or show it.
    pub fn connection_url(&self) -> &str {
        &self.raw_url
    }

    /// Closes every connection; later calls fail. Waits for connections in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Creates an experiment with status `"running"` and no summary; returns its id. Names are
    /// unique per store and never all digits (see [`validate_experiment_name`]): a taken name is
    /// [`StoreError::ExperimentNameTaken`], naming the experiment that holds it.
    pub async fn create_experiment(&self, e: &NewExperiment) -> Result<i64> {
        const OP: &str = "create_experiment";
        let target = || format!("experiment {:?}", e.name);
        crate::models::check_name_of(OP, "experiment", &e.name)?;
        let config = to_json(OP, &target, "config", &e.config)?;
        let taken = |held: ExperimentRow| StoreError::ExperimentNameTaken {
            op: OP,
            name: e.name.clone(),
            id: held.id,
            status: held.status,
        };
        if let Some(held) = self.experiment_by_name(&e.name).await? {
            return Err(taken(held));
        }
        let inserted = sqlx::query_scalar(
            "INSERT INTO experiments (name, strategy, dataset, dataset_hash, config, seed, status, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'running', $7) RETURNING id",
        )
        .bind(&e.name)
        .bind(&e.strategy)
        .bind(&e.dataset)
        .bind(&e.dataset_hash)
        .bind(config)
        .bind(e.seed.to_string())
        .bind(e.created_at)
        .fetch_one(&self.pool)
        .await;
        match inserted {
            Ok(id) => Ok(id),
            // Another writer took the name between the check and the insert.
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                match self.experiment_by_name(&e.name).await? {
                    Some(held) => Err(taken(held)),
                    None => Err(db(OP, target)(sqlx::Error::Database(d))),
                }
            }
            Err(other) => Err(db(OP, target)(other)),
        }
    }

    /// Sets an experiment's status (e.g. [`ExperimentStatus::Done`]) and summary (`None` clears
    /// it), clearing any stored error ([`Store::fail_experiment`] sets one).
    pub async fn set_experiment_status(
        &self,
        id: i64,
        status: ExperimentStatus,
        summary: Option<&Value>,
    ) -> Result<()> {
        const OP: &str = "set_experiment_status";
        let target = || format!("experiment {id}");
        let summary = summary
            .map(|s| to_json(OP, &target, "summary", s))
            .transpose()?;
        let done = sqlx::query(
            "UPDATE experiments SET status = $1, summary = $2, error = NULL WHERE id = $3",
        )
        .bind(status.as_str())
        .bind(summary)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db(OP, target))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                op: OP,
                target: target(),
            });
        }
        Ok(())
    }

    /// Records who runs experiment `id` and sets it `"running"` again (a resumed run), clearing
    /// the reason of an earlier failure.
    pub async fn mark_running(&self, id: i64, runner: &Runner) -> Result<()> {
        const OP: &str = "mark_running";
        let target = || format!("experiment {id}");
        let done = sqlx::query(
            "UPDATE experiments SET status = 'running', error = NULL, pid = $1, host = $2,
                 heartbeat_at = $3
             WHERE id = $4",
        )
        .bind(runner.pid)
        .bind(&runner.host)
        .bind(runner.at)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db(OP, target))?;
        found(OP, done.rows_affected(), target)
    }

    /// Notes that the process running experiment `id` was alive at `at` (unix seconds).
    pub async fn heartbeat(&self, id: i64, at: i64) -> Result<()> {
        const OP: &str = "heartbeat";
        let target = || format!("experiment {id}");
        let done = sqlx::query("UPDATE experiments SET heartbeat_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db(OP, target))?;
        found(OP, done.rows_affected(), target)
    }

    /// Ends experiment `id` in `status` ([`ExperimentStatus::Failed`] or
    /// [`ExperimentStatus::Interrupted`]) with the reason, kept for `experiments list/show` and
    /// `report`.
    pub async fn fail_experiment(
        &self,
        id: i64,
        status: ExperimentStatus,
        reason: &str,
    ) -> Result<()> {
        const OP: &str = "fail_experiment";
        let target = || format!("experiment {id}");
        let done = sqlx::query("UPDATE experiments SET status = $1, error = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(reason)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db(OP, target))?;
        found(OP, done.rows_affected(), target)
    }

    /// The experiment named exactly `name`, if any.
    pub async fn experiment_by_name(&self, name: &str) -> Result<Option<ExperimentRow>> {
        const OP: &str = "experiment_by_name";
        let target = || format!("experiment {name:?}");
        let row = sqlx::query(concat!(select_experiments!(), "WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db(OP, target))?;
        row.map(|row| experiment_from_row(OP, &row)).transpose()
    }

    /// Stores a fold, replacing the one with the same `(experiment_id, fold)`.
    pub async fn add_fold(&self, f: &FoldRow) -> Result<()> {
        const OP: &str = "add_fold";
        let target = || format!("experiment {} fold {}", f.experiment_id, f.fold);
        let block = |field, value| to_bigint(OP, &target, field, value);
        sqlx::query(
            "INSERT INTO folds (experiment_id, fold, train_from, train_to, test_from, test_to)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (experiment_id, fold) DO UPDATE SET
                 train_from = excluded.train_from, train_to = excluded.train_to,
                 test_from = excluded.test_from, test_to = excluded.test_to",
        )
        .bind(f.experiment_id)
        .bind(f.fold)
        .bind(block("train_from", f.train_from)?)
        .bind(block("train_to", f.train_to)?)
        .bind(block("test_from", f.test_from)?)
        .bind(block("test_to", f.test_to)?)
        .execute(&self.pool)
        .await
        .map_err(db(OP, target))?;
        Ok(())
    }

    /// Creates a run; returns its id.
    pub async fn add_run(&self, r: &NewRun) -> Result<i64> {
        const OP: &str = "add_run";
        let target = || format!("experiment {} fold {} {}", r.experiment_id, r.fold, r.kind);
        let params = to_json(OP, &target, "params", &r.params)?;
        let (has_train, train) = optional_f64(OP, &target, "train_objective", r.train_objective)?;
        let (has_test, test) = optional_f64(OP, &target, "test_objective", r.test_objective)?;
        sqlx::query_scalar(
            "INSERT INTO runs (experiment_id, fold, kind, params, train_objective, test_objective)
             VALUES ($1, $2, $3, $4, CASE WHEN $5 = 1 THEN $6 END, CASE WHEN $7 = 1 THEN $8 END)
             RETURNING id",
        )
        .bind(r.experiment_id)
        .bind(r.fold)
        .bind(r.kind.as_str())
        .bind(params)
        .bind(has_train)
        .bind(train)
        .bind(has_test)
        .bind(test)
        .fetch_one(&self.pool)
        .await
        .map_err(db(OP, target))
    }

    /// Replaces a run's parameters and objectives.
    pub async fn update_run(
        &self,
        run_id: i64,
        params: &Value,
        train_objective: Option<f64>,
        test_objective: Option<f64>,
    ) -> Result<()> {
        const OP: &str = "update_run";
        let target = || format!("run {run_id}");
        let params = to_json(OP, &target, "params", params)?;
        let (has_train, train) = optional_f64(OP, &target, "train_objective", train_objective)?;
        let (has_test, test) = optional_f64(OP, &target, "test_objective", test_objective)?;
        let done = sqlx::query(
            "UPDATE runs SET params = $1,
                 train_objective = CASE WHEN $2 = 1 THEN $3 END,
                 test_objective = CASE WHEN $4 = 1 THEN $5 END
             WHERE id = $6",
        )
        .bind(params)
        .bind(has_train)
        .bind(train)
        .bind(has_test)
        .bind(test)
        .bind(run_id)
        .execute(&self.pool)
        .await
        .map_err(db(OP, target))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                op: OP,
                target: target(),
            });
        }
        Ok(())
    }

    /// The latest run of `kind` in an experiment's fold, if any (for resuming).
    pub async fn find_run(
        &self,
        experiment_id: i64,
        fold: i32,
        kind: RunKind,
    ) -> Result<Option<RunRow>> {
        const OP: &str = "find_run";
        let target = || format!("experiment {experiment_id} fold {fold} {kind}");
        let row = sqlx::query(
            "SELECT id, experiment_id, fold, kind, params, train_objective, test_objective
             FROM runs WHERE experiment_id = $1 AND fold = $2 AND kind = $3
             ORDER BY id DESC LIMIT 1",
        )
        .bind(experiment_id)
        .bind(fold)
        .bind(kind.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db(OP, target))?;
        row.map(|row| run_from_row(OP, &row)).transpose()
    }

    /// Stores a generation and its population in one transaction. Storing the same
    /// `(run_id, generation)` again replaces both the summary and the whole population.
    pub async fn add_generation(
        &self,
        g: &GenerationRow,
        individuals: &[IndividualRow],
    ) -> Result<()> {
        const OP: &str = "add_generation";
        let target = || format!("run {} generation {}", g.run_id, g.generation);
        for (field, value) in [("best", g.best), ("mean", g.mean), ("worst", g.worst)] {
            finite(OP, &target, field, value)?;
        }
        let mut params = Vec::with_capacity(individuals.len());
        for ind in individuals {
            finite(
                OP,
                &target,
                &format!("fitness of individual {}", ind.idx),
                ind.fitness,
            )?;
            params.push(to_json(OP, &target, "individual params", &ind.params)?);
        }

        let mut tx = self.pool.begin().await.map_err(db(OP, target))?;
        sqlx::query(
            "INSERT INTO generations (run_id, generation, best, mean, worst, evaluations)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (run_id, generation) DO UPDATE SET
                 best = excluded.best, mean = excluded.mean, worst = excluded.worst,
                 evaluations = excluded.evaluations",
        )
        .bind(g.run_id)
        .bind(g.generation)
        .bind(g.best)
        .bind(g.mean)
        .bind(g.worst)
        .bind(g.evaluations)
        .execute(&mut *tx)
        .await
        .map_err(db(OP, target))?;
        sqlx::query("DELETE FROM individuals WHERE run_id = $1 AND generation = $2")
            .bind(g.run_id)
            .bind(g.generation)
            .execute(&mut *tx)
            .await
            .map_err(db(OP, target))?;
        for (chunk, params) in individuals
            .chunks(INDIVIDUALS_PER_INSERT)
            .zip(params.chunks(INDIVIDUALS_PER_INSERT))
        {
            let mut sql = String::from(
                "INSERT INTO individuals (run_id, generation, idx, params, fitness) VALUES ",
            );
            for i in 0..chunk.len() {
                let p = 3 + 3 * i;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("($1, $2, ${p}, ${}, ${})", p + 1, p + 2));
            }
            let mut query = sqlx::query(AssertSqlSafe(sql))
                .bind(g.run_id)
                .bind(g.generation);
            for (ind, params) in chunk.iter().zip(params) {
                query = query.bind(ind.idx).bind(params.as_str()).bind(ind.fitness);
            }
            query.execute(&mut *tx).await.map_err(db(OP, target))?;
        }
        tx.commit().await.map_err(db(OP, target))
    }

    /// Stores a run's metrics for one window (e.g. `"train"`, `"test"`), replacing earlier ones.
    pub async fn add_metrics(&self, run_id: i64, window: &str, metrics: &Value) -> Result<()> {
        const OP: &str = "add_metrics";
        let target = || format!("run {run_id} window {window:?}");
        let metrics = to_json(OP, &target, "metrics", metrics)?;
        sqlx::query(
            "INSERT INTO metrics (run_id, window_name, metrics) VALUES ($1, $2, $3)
             ON CONFLICT (run_id, window_name) DO UPDATE SET metrics = excluded.metrics",
        )
        .bind(run_id)
        .bind(window)
        .bind(metrics)
        .execute(&self.pool)
        .await
        .map_err(db(OP, target))?;
        Ok(())
    }

    /// Stores a run's equity curve for one window, replacing an earlier one. The points go into
    /// one row as JSON `[[block, equity], …]`.
    pub async fn add_equity(
        &self,
        run_id: i64,
        window: &str,
        points: &[EquityPoint],
    ) -> Result<()> {
        const OP: &str = "add_equity";
        let target = || format!("run {run_id} window {window:?}");
        for p in points {
            finite(
                OP,
                &target,
                &format!("equity at block {}", p.block),
                p.equity,
            )?;
        }
        let pairs: Vec<(u64, f64)> = points.iter().map(|p| (p.block, p.equity)).collect();
        let points = serde_json::to_string(&pairs).map_err(|source| StoreError::Encode {
            op: OP,
            target: target(),
            field: "points",
            source,
        })?;
        sqlx::query(
            "INSERT INTO equity_curves (run_id, window_name, points) VALUES ($1, $2, $3)
             ON CONFLICT (run_id, window_name) DO UPDATE SET points = excluded.points",
        )
        .bind(run_id)
        .bind(window)
        .bind(points)
        .execute(&self.pool)
        .await
        .map_err(db(OP, target))?;
        Ok(())
    }

    /// Every experiment, newest first (by `created_at`, then id).
    pub async fn list_experiments(&self) -> Result<Vec<ExperimentRow>> {
        const OP: &str = "list_experiments";
        let target = || "all experiments".to_owned();
        let rows = sqlx::query(concat!(
            select_experiments!(),
            "ORDER BY created_at DESC, id DESC",
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db(OP, target))?;
        rows.iter()
            .map(|row| experiment_from_row(OP, row))
            .collect()
    }

    /// The experiment with this numeric id, else the one with this name (names are unique; an
    /// all-digit name, possible only in a store from before they were refused, is found by name
    /// when no experiment has that id).
    pub async fn find_experiment(&self, id_or_name: &str) -> Result<Option<ExperimentRow>> {
        const OP: &str = "find_experiment";
        if let Ok(id) = id_or_name.trim().parse::<i64>()
            && let Some(found) = self.experiment_by_id(OP, id).await?
        {
            return Ok(Some(found));
        }
        let target = || format!("experiment {id_or_name:?}");
        let row = sqlx::query(concat!(
            select_experiments!(),
            "WHERE name = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
        ))
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db(OP, target))?;
        row.map(|row| experiment_from_row(OP, &row)).transpose()
    }

    /// Everything stored about experiment `id`, read in one transaction.
    pub async fn experiment_detail(&self, id: i64) -> Result<ExperimentDetail> {
        const OP: &str = "experiment_detail";
        let target = || format!("experiment {id}");
        let mut tx = self.pool.begin().await.map_err(db(OP, target))?;
        if self.backend == Backend::Postgres {
            // One snapshot for all the reads below (SQLite's transaction already is one).
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await
                .map_err(db(OP, target))?;
        }

        let experiment = sqlx::query(concat!(select_experiments!(), "WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(OP, target))?
            .ok_or_else(|| StoreError::NotFound {
                op: OP,
                target: target(),
            })?;
        let experiment = experiment_from_row(OP, &experiment)?;

        let folds = sqlx::query(
            "SELECT experiment_id, fold, train_from, train_to, test_from, test_to
             FROM folds WHERE experiment_id = $1 ORDER BY fold",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db(OP, target))?
        .iter()
        .map(|row| fold_from_row(OP, row))
        .collect::<Result<Vec<_>>>()?;

        let runs = sqlx::query(
            "SELECT id, experiment_id, fold, kind, params, train_objective, test_objective
             FROM runs WHERE experiment_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db(OP, target))?
        .iter()
        .map(|row| run_from_row(OP, row))
        .collect::<Result<Vec<_>>>()?;

        let generations = sqlx::query(
            "SELECT g.run_id, g.generation, g.best, g.mean, g.worst, g.evaluations
             FROM generations g JOIN runs r ON r.id = g.run_id
             WHERE r.experiment_id = $1 ORDER BY g.run_id, g.generation",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db(OP, target))?
        .iter()
        .map(|row| generation_from_row(OP, row))
        .collect::<Result<Vec<_>>>()?;

        // One entry per run with generations (sorted by run id, as `generations` is), even
        // when its last generation stored no individuals.
        let mut final_population: Vec<(i64, Vec<IndividualRow>)> = Vec::new();
        for g in &generations {
            if final_population.last().map(|(run_id, _)| *run_id) != Some(g.run_id) {
                final_population.push((g.run_id, Vec::new()));
            }
        }
        let individuals = sqlx::query(
            "SELECT i.run_id, i.idx, i.params, i.fitness
             FROM individuals i
             JOIN (SELECT g.run_id, MAX(g.generation) AS generation
                   FROM generations g JOIN runs r ON r.id = g.run_id
                   WHERE r.experiment_id = $1 GROUP BY g.run_id) last
               ON last.run_id = i.run_id AND last.generation = i.generation
             ORDER BY i.run_id, i.idx",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db(OP, target))?;
        for row in &individuals {
            let run_id: i64 = get(OP, row, "run_id")?;
            let individual = IndividualRow {
                idx: get(OP, row, "idx")?,
                params: json_column(OP, row, "params", || format!("run {run_id} individual"))?,
                fitness: get(OP, row, "fitness")?,
            };
            if let Ok(at) = final_population.binary_search_by_key(&run_id, |(id, _)| *id) {
                final_population[at].1.push(individual);
            }
        }

        let metrics = sqlx::query(
            "SELECT m.run_id, m.window_name, m.metrics
             FROM metrics m JOIN runs r ON r.id = m.run_id
             WHERE r.experiment_id = $1 ORDER BY m.run_id, m.window_name",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db(OP, target))?
        .iter()
        .map(|row| {
            let run_id: i64 = get(OP, row, "run_id")?;
            let window: String = get(OP, row, "window_name")?;
            let target = || format!("run {run_id} window {window:?}");
            let metrics = json_column(OP, row, "metrics", target)?;
            Ok((run_id, window, metrics))
        })
        .collect::<Result<Vec<_>>>()?;

        let equity = sqlx::query(
            "SELECT e.run_id, e.window_name, e.points
             FROM equity_curves e JOIN runs r ON r.id = e.run_id
             WHERE r.experiment_id = $1 ORDER BY e.run_id, e.window_name",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db(OP, target))?
        .iter()
        .map(|row| {
            let run_id: i64 = get(OP, row, "run_id")?;
            let window: String = get(OP, row, "window_name")?;
            let text: String = get(OP, row, "points")?;
            let pairs: Vec<(u64, f64)> =
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    op: OP,
                    target: format!("run {run_id} window {window:?}"),
                    field: "points",
                    detail: e.to_string(),
                })?;
            let points = pairs
                .into_iter()
                .map(|(block, equity)| EquityPoint { block, equity })
                .collect();
            Ok((run_id, window, points))
        })
        .collect::<Result<Vec<_>>>()?;

        tx.commit().await.map_err(db(OP, target))?;
        Ok(ExperimentDetail {
            experiment,
            folds,
            runs,
            generations,
            final_population,
            metrics,
            equity,
        })
    }

    async fn experiment_by_id(&self, op: &'static str, id: i64) -> Result<Option<ExperimentRow>> {
        let row = sqlx::query(concat!(select_experiments!(), "WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db(op, || format!("experiment {id}")))?;
        row.map(|row| experiment_from_row(op, &row)).transpose()
    }
}

/// [`Store::url_from_env`] with the variable's value passed in (tests cannot set variables).
fn url_from(database_url: Option<&str>, workdir: &Path) -> String {
    match database_url {
        Some(url) if !url.trim().is_empty() => url.to_owned(),
        _ => url::sqlite_url(&workdir.join("dexlab.sqlite")),
    }
}

/// Maps a sqlx error to [`StoreError::Database`], naming the operation and its rows.
/// `NotFound` when an update touched no row.
fn found(op: &'static str, rows: u64, target: impl Fn() -> String) -> Result<()> {
    if rows == 0 {
        return Err(StoreError::NotFound {
            op,
            target: target(),
        });
    }
    Ok(())
}

fn db(op: &'static str, target: impl Fn() -> String) -> impl Fn(sqlx::Error) -> StoreError {
    move |source| StoreError::Database {
        op,
        target: target(),
        source,
    }
}

fn to_json(
    op: &'static str,
    target: &dyn Fn() -> String,
    field: &'static str,
    value: &Value,
) -> Result<String> {
    serde_json::to_string(value).map_err(|source| StoreError::Encode {
        op,
        target: target(),
        field,
        source,
    })
}

fn finite(op: &'static str, target: &dyn Fn() -> String, field: &str, value: f64) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(StoreError::NonFinite {
            op,
            target: target(),
            field: field.to_owned(),
            value,
        })
    }
}

/// An optional f64 as a `(present, value)` pair of parameters, for `CASE WHEN $n = 1 THEN $m END`.
///
/// Binding `None` directly would not do: on PostgreSQL the `Any` driver types a NULL f64 as
/// `real` (float4), and the statement is cached with the parameter types of its first call, so a
/// later `Some` would fail to bind. With this pair the parameter types never change.
fn optional_f64(
    op: &'static str,
    target: &dyn Fn() -> String,
    field: &str,
    value: Option<f64>,
) -> Result<(i32, f64)> {
    match value {
        Some(v) => Ok((1, finite(op, target, field, v)?)),
        None => Ok((0, 0.0)),
    }
}

fn to_bigint(
    op: &'static str,
    target: &dyn Fn() -> String,
    field: &'static str,
    value: u64,
) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange {
        op,
        target: target(),
        field,
        value,
    })
}

fn get<'r, T>(op: &'static str, row: &'r AnyRow, column: &'static str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(column).map_err(|source| StoreError::Database {
        op,
        target: format!("column {column}"),
        source,
    })
}

fn json_column(
    op: &'static str,
    row: &AnyRow,
    column: &'static str,
    target: impl Fn() -> String,
) -> Result<Value> {
    let text: String = get(op, row, column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
        op,
        target: target(),
        field: column,
        detail: e.to_string(),
    })
}

/// A text column that holds one of an enum's names (see `dexlab-types`); any other text is
/// [`StoreError::Corrupt`], naming the row and the value.
pub(crate) fn name_column<T>(
    op: &'static str,
    row: &AnyRow,
    column: &'static str,
    target: impl Fn() -> String,
    parse: fn(&str) -> Option<T>,
) -> Result<T> {
    let text: String = get(op, row, column)?;
    parse(&text).ok_or_else(|| StoreError::Corrupt {
        op,
        target: target(),
        field: column,
        detail: format!("unknown {column} {text:?}"),
    })
}

/// A BIGINT column that holds a u64 (a block number, a count); a negative value is
/// [`StoreError::Corrupt`].
pub(crate) fn u64_column(
    op: &'static str,
    row: &AnyRow,
    column: &'static str,
    target: impl Fn() -> String,
) -> Result<u64> {
    let value: i64 = get(op, row, column)?;
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        op,
        target: target(),
        field: column,
        detail: format!("negative {column} {value}"),
    })
}

fn experiment_from_row(op: &'static str, row: &AnyRow) -> Result<ExperimentRow> {
    let id: i64 = get(op, row, "id")?;
    let target = || format!("experiment {id}");
    let seed: String = get(op, row, "seed")?;
    let summary: Option<String> = get(op, row, "summary")?;
    Ok(ExperimentRow {
        id,
        name: get(op, row, "name")?,
        strategy: get(op, row, "strategy")?,
        dataset: get(op, row, "dataset")?,
        dataset_hash: get(op, row, "dataset_hash")?,
        config: json_column(op, row, "config", target)?,
        seed: seed.parse().map_err(|e| StoreError::Corrupt {
            op,
            target: target(),
            field: "seed",
            detail: format!("{seed:?}: {e}"),
        })?,
        status: name_column(op, row, "status", target, ExperimentStatus::from_name)?,
        summary: summary
            .map(|text| {
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    op,
                    target: target(),
                    field: "summary",
                    detail: e.to_string(),
                })
            })
            .transpose()?,
        created_at: get(op, row, "created_at")?,
        error: get(op, row, "error")?,
        pid: get(op, row, "pid")?,
        host: get(op, row, "host")?,
        heartbeat_at: get(op, row, "heartbeat_at")?,
    })
}

fn fold_from_row(op: &'static str, row: &AnyRow) -> Result<FoldRow> {
    let experiment_id: i64 = get(op, row, "experiment_id")?;
    let fold: i32 = get(op, row, "fold")?;
    let target = || format!("experiment {experiment_id} fold {fold}");
    Ok(FoldRow {
        experiment_id,
        fold,
        train_from: u64_column(op, row, "train_from", target)?,
        train_to: u64_column(op, row, "train_to", target)?,
        test_from: u64_column(op, row, "test_from", target)?,
        test_to: u64_column(op, row, "test_to", target)?,
    })
}

fn run_from_row(op: &'static str, row: &AnyRow) -> Result<RunRow> {
    let id: i64 = get(op, row, "id")?;
    Ok(RunRow {
        id,
        experiment_id: get(op, row, "experiment_id")?,
        fold: get(op, row, "fold")?,
        kind: name_column(op, row, "kind", || format!("run {id}"), RunKind::from_name)?,
        params: json_column(op, row, "params", || format!("run {id}"))?,
        train_objective: get(op, row, "train_objective")?,
        test_objective: get(op, row, "test_objective")?,
    })
}

fn generation_from_row(op: &'static str, row: &AnyRow) -> Result<GenerationRow> {
    Ok(GenerationRow {
        run_id: get(op, row, "run_id")?,
        generation: get(op, row, "generation")?,
        best: get(op, row, "best")?,
        mean: get(op, row, "mean")?,
        worst: get(op, row, "worst")?,
        evaluations: get(op, row, "evaluations")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_from_env_prefers_a_non_empty_database_url() {
        let workdir = Path::new("/srv/dexlab runs");
        assert_eq!(
            url_from(Some("postgres://h/db"), workdir),
            "postgres://h/db"
        );
        let fallback = "sqlite:/srv/dexlab%20runs/dexlab.sqlite";
        assert_eq!(url_from(None, workdir), fallback);
        assert_eq!(url_from(Some(""), workdir), fallback);
        assert_eq!(url_from(Some("  "), workdir), fallback);
        assert_eq!(
            url_from(None, Path::new("runs")),
            "sqlite:runs/dexlab.sqlite"
        );
    }

    /// Callers spawn store calls onto tokio (server, CLI); an in-memory store keeps its data
    /// across calls because its pool holds its only connection.
    #[tokio::test]
    async fn futures_spawn_and_memory_store_keeps_data() {
        let store = tokio::spawn(Store::connect("sqlite::memory:"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(store.backend(), "sqlite");
        let s = store.clone();
        let id = tokio::spawn(async move {
            let e = NewExperiment {
                name: "mem".into(),
                strategy: "s".into(),
                dataset: "d".into(),
                dataset_hash: "h".into(),
                config: serde_json::json!({}),
                seed: 7,
                created_at: 1,
            };
            s.create_experiment(&e).await
        })
        .await
        .unwrap()
        .unwrap();
        let s = store.clone();
        let detail = tokio::spawn(async move { s.experiment_detail(id).await })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (detail.experiment.name.as_str(), detail.experiment.seed),
            ("mem", 7)
        );
        assert_eq!(store.list_experiments().await.unwrap().len(), 1);
    }
}
