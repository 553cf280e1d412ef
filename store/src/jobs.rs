//! Work launched from the dashboard: a row per job, claimed by a runner, with its progress.
//!
//! A job is added `queued` ([`Store::add_job`]). A runner claims the oldest queued job in one
//! statement ([`Store::claim_job`]), so two runners (two servers on one PostgreSQL) never take
//! the same job, and beats ([`Store::job_heartbeat`]) while it runs; a running job whose
//! heartbeat is older than a limit goes back to the queue ([`Store::requeue_stale_jobs`]): a
//! server killed while it ran a job loses nothing, and queued jobs wait in the table across
//! restarts. Cancelling a queued job ends it at once; a running job is flagged and its runner
//! stops it ([`Store::cancel_job`]).

use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;

use crate::{Result, Store, StoreError, db, found, get, to_bigint, to_json};

/// What a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Backtest,
    Evolve,
    Train,
}

impl JobKind {
    pub const ALL: [JobKind; 3] = [JobKind::Backtest, JobKind::Evolve, JobKind::Train];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Backtest => "backtest",
            JobKind::Evolve => "evolve",
            JobKind::Train => "train",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Succeeded, failed or cancelled: nothing more happens to it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// A job about to be queued.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: JobKind,
    /// The validated request.
    pub spec: Value,
    /// The launching account's username.
    pub created_by: String,
    pub created_by_id: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRow {
    pub id: i64,
    pub kind: JobKind,
    pub spec: Value,
    pub state: JobState,
    pub created_by: String,
    pub created_by_id: Option<i64>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub heartbeat_at: Option<i64>,
    /// The runner that holds (or last held) it.
    pub runner: Option<String>,
    /// How often a runner claimed it.
    pub attempts: i64,
    pub cancel_requested: bool,
    pub progress_done: u64,
    pub progress_total: u64,
    pub progress_note: Option<String>,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    pub result: Option<Value>,
}

/// How a running job ended.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEnd {
    /// Succeeded, Failed or Cancelled.
    pub state: JobState,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    pub result: Option<Value>,
    /// The command's last report (done, total, note).
    pub progress: (u64, u64, Option<String>),
    pub at: i64,
}

macro_rules! job_columns {
    () => {
        "id, kind, spec, state, created_by, created_by_id, created_at, started_at, \
         finished_at, heartbeat_at, runner, attempts, cancel_requested, progress_done, \
         progress_total, progress_note, exit_code, error, result"
    };
}

fn job_from_row(op: &'static str, row: &AnyRow) -> Result<JobRow> {
    let id: i64 = get(op, row, "id")?;
    let target = || format!("job {id}");
    let kind: String = get(op, row, "kind")?;
    let state: String = get(op, row, "state")?;
    let corrupt = |field: &'static str, value: String| StoreError::Corrupt {
        op,
        target: target(),
        field,
        detail: format!("{value:?}"),
    };
    let spec: String = get(op, row, "spec")?;
    let result: Option<String> = get(op, row, "result")?;
    let json = |field: &'static str, text: &str| {
        serde_json::from_str::<Value>(text).map_err(|e| StoreError::Corrupt {
            op,
            target: target(),
            field,
            detail: format!("not JSON: {e}"),
        })
    };
    let count = |column: &'static str| -> Result<u64> {
        let v: i64 = get(op, row, column)?;
        u64::try_from(v).map_err(|_| corrupt(column, v.to_string()))
    };
    Ok(JobRow {
        id,
        kind: JobKind::from_name(&kind).ok_or_else(|| corrupt("kind", kind.clone()))?,
        spec: json("spec", &spec)?,
        state: JobState::from_name(&state).ok_or_else(|| corrupt("state", state.clone()))?,
        created_by: get(op, row, "created_by")?,
        created_by_id: get(op, row, "created_by_id")?,
        created_at: get(op, row, "created_at")?,
        started_at: get(op, row, "started_at")?,
        finished_at: get(op, row, "finished_at")?,
        heartbeat_at: get(op, row, "heartbeat_at")?,
        runner: get(op, row, "runner")?,
        attempts: get(op, row, "attempts")?,
        cancel_requested: get::<i64>(op, row, "cancel_requested")? != 0,
        progress_done: count("progress_done")?,
        progress_total: count("progress_total")?,
        progress_note: get(op, row, "progress_note")?,
        exit_code: get(op, row, "exit_code")?,
        error: get(op, row, "error")?,
        result: result.as_deref().map(|t| json("result", t)).transpose()?,
    })
}

impl Store {
    /// Queues a job; returns it.
    pub async fn add_job(&self, j: &NewJob) -> Result<JobRow> {
        const OP: &str = "add_job";
        let target = || format!("{} job by {}", j.kind.as_str(), j.created_by);
        let spec = to_json(OP, &target, "spec", &j.spec)?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO jobs (kind, spec, state, created_by, created_by_id, created_at)
             VALUES ($1, $2, 'queued', $3, $4, $5) RETURNING id",
        )
        .bind(j.kind.as_str())
        .bind(spec)
        .bind(&j.created_by)
        .bind(j.created_by_id)
        .bind(j.created_at)
        .fetch_one(&self.pool)
        .await
        .map_err(db(OP, target))?;
        self.expect_job(OP, id).await
    }

    /// Job `id`, if there is one.
    pub async fn job(&self, id: i64) -> Result<Option<JobRow>> {
        const OP: &str = "job";
        let row = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db(OP, || format!("job {id}")))?;
        row.map(|r| job_from_row(OP, &r)).transpose()
    }

    async fn expect_job(&self, op: &'static str, id: i64) -> Result<JobRow> {
        self.job(id).await?.ok_or_else(|| StoreError::NotFound {
            op,
            target: format!("job {id}"),
        })
    }

    /// Up to `limit` jobs, newest first, in `state` when given; with `before_id`, only older
    /// ones (pass the last id of one page to get the next).
    pub async fn list_jobs(
        &self,
        state: Option<JobState>,
        limit: u32,
        before_id: Option<i64>,
    ) -> Result<Vec<JobRow>> {
        const OP: &str = "list_jobs";
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id < $1 AND ($2 = '' OR state = $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(before_id.unwrap_or(i64::MAX))
        .bind(state.map_or("", JobState::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db(OP, || "jobs".to_owned()))?;
        rows.iter().map(|r| job_from_row(OP, r)).collect()
    }

    /// Claims the oldest queued job for `runner` (running, started and beating at `now`,
    /// attempts + 1), or `None` when the queue is empty. Atomic: of runners claiming at once,
    /// one gets each job.
    pub async fn claim_job(&self, runner: &str, now: i64) -> Result<Option<JobRow>> {
        const OP: &str = "claim_job";
        loop {
            let next: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1",
            )
            .fetch_optional(&self.pool)
            .await
            .map_err(db(OP, || "jobs".to_owned()))?;
            let Some(id) = next else { return Ok(None) };
            if let Some(job) = self.claim_job_id(id, runner, now).await? {
                return Ok(Some(job));
            }
            // Another runner claimed it meanwhile: look again.
        }
    }

    /// Claims job `id` for `runner` if it is queued (as [`Store::claim_job`] does), `None`
    /// when it is not: a runner that was handed a job by id (a queue message) takes it only
    /// once, whatever the number of copies of the message.
    pub async fn claim_job_id(&self, id: i64, runner: &str, now: i64) -> Result<Option<JobRow>> {
        const OP: &str = "claim_job";
        let done = sqlx::query(
            "UPDATE jobs SET state = 'running', runner = $1, started_at = $2,
                 heartbeat_at = $2, attempts = attempts + 1, progress_done = 0,
                 progress_total = 0, progress_note = NULL
             WHERE id = $3 AND state = 'queued'",
        )
        .bind(runner)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db(OP, || format!("job {id}")))?;
        if done.rows_affected() == 1 {
            self.expect_job(OP, id).await.map(Some)
        } else {
            Ok(None)
        }
    }

    /// Records that `runner` still runs job `id`, with its progress; returns whether a cancel
    /// was requested. [`StoreError::NotFound`] when the job is no longer this runner's running
    /// job (it was requeued as stale and perhaps claimed by another runner): the caller must
    /// stop it.
    pub async fn job_heartbeat(
        &self,
        id: i64,
        runner: &str,
        now: i64,
        progress: (u64, u64, Option<&str>),
    ) -> Result<bool> {
        const OP: &str = "job_heartbeat";
        let target = || format!("job {id} of runner {runner}");
        let (done, total, note) = progress;
        let done = to_bigint(OP, &target, "progress_done", done)?;
        let total = to_bigint(OP, &target, "progress_total", total)?;
        let cancel: Option<i64> = sqlx::query_scalar(
            "UPDATE jobs SET heartbeat_at = $1, progress_done = $2, progress_total = $3,
                 progress_note = $4
             WHERE id = $5 AND runner = $6 AND state = 'running'
             RETURNING cancel_requested",
        )
        .bind(now)
        .bind(done)
        .bind(total)
        .bind(note)
        .bind(id)
        .bind(runner)
        .fetch_optional(&self.pool)
        .await
        .map_err(db(OP, target))?;
        match cancel {
            Some(c) => Ok(c != 0),
            None => Err(StoreError::NotFound {
                op: OP,
                target: target(),
            }),
        }
    }

    /// Ends `runner`'s running job `id`. [`StoreError::NotFound`] when it is not this runner's
    /// running job any more.
    pub async fn finish_job(&self, id: i64, runner: &str, end: &JobEnd) -> Result<JobRow> {
        const OP: &str = "finish_job";
        let target = || format!("job {id} of runner {runner}");
        let result = match &end.result {
            Some(r) => Some(to_json(OP, &target, "result", r)?),
            None => None,
        };
        let (done, total, note) = &end.progress;
        let done = to_bigint(OP, &target, "progress_done", *done)?;
        let total = to_bigint(OP, &target, "progress_total", *total)?;
        let done = sqlx::query(
            "UPDATE jobs SET state = $1, finished_at = $2, heartbeat_at = $2, exit_code = $3,
                 error = $4, result = $5, progress_done = $8, progress_total = $9,
                 progress_note = $10
             WHERE id = $6 AND runner = $7 AND state = 'running'",
        )
        .bind(end.state.as_str())
        .bind(end.at)
        .bind(end.exit_code)
        .bind(end.error.as_deref())
        .bind(result.as_deref())
        .bind(id)
        .bind(runner)
        .bind(done)
        .bind(total)
        .bind(note.as_deref())
        .execute(&self.pool)
        .await
        .map_err(db(OP, target))?;
        found(OP, done.rows_affected(), target)?;
        self.expect_job(OP, id).await
    }

    /// Cancels job `id`: a queued job is cancelled at once; a running one is flagged for its
    /// runner to stop; a finished one is left as it is. Returns the job as it is now (its state
    /// says which happened).
    pub async fn cancel_job(&self, id: i64, now: i64) -> Result<JobRow> {
        const OP: &str = "cancel_job";
        let target = || format!("job {id}");
        sqlx::query(
            "UPDATE jobs SET state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
                 finished_at = CASE WHEN state = 'queued' THEN $1 ELSE finished_at END,
                 cancel_requested = CASE WHEN state IN ('queued', 'running') THEN 1
                                         ELSE cancel_requested END
             WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db(OP, target))?;
        self.expect_job(OP, id).await
    }

    /// Puts running jobs whose last heartbeat is before `stale_before` back in the queue (their
    /// runner died); a job already claimed `max_attempts` times fails instead. Returns the ids
    /// requeued and the ids failed.
    pub async fn requeue_stale_jobs(
        &self,
        stale_before: i64,
        max_attempts: i64,
        now: i64,
    ) -> Result<(Vec<i64>, Vec<i64>)> {
        const OP: &str = "requeue_stale_jobs";
        let target = || "stale jobs".to_owned();
        // Runners poll this: a read first, so that an idle poll takes no write lock (SQLite).
        let stale: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE state = 'running' AND heartbeat_at < $1",
        )
        .bind(stale_before)
        .fetch_one(&self.pool)
        .await
        .map_err(db(OP, target))?;
        if stale == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        // A cancel requested of a job whose runner died is honoured here (after the failures).
        let failed: Vec<i64> = sqlx::query_scalar(
            "UPDATE jobs SET state = 'failed', finished_at = $1,
                 error = 'its runner stopped while it ran, ' || CAST(attempts AS TEXT) || ' times'
             WHERE state = 'running' AND heartbeat_at < $2 AND attempts >= $3
             RETURNING id",
        )
        .bind(now)
        .bind(stale_before)
        .bind(max_attempts)
        .fetch_all(&self.pool)
        .await
        .map_err(db(OP, target))?;
        sqlx::query(
            "UPDATE jobs SET state = 'cancelled', finished_at = $1
             WHERE state = 'running' AND heartbeat_at < $2 AND cancel_requested = 1",
        )
        .bind(now)
        .bind(stale_before)
        .execute(&self.pool)
        .await
        .map_err(db(OP, target))?;
        let requeued: Vec<i64> = sqlx::query_scalar(
            "UPDATE jobs SET state = 'queued', runner = NULL, heartbeat_at = NULL
             WHERE state = 'running' AND heartbeat_at < $1
             RETURNING id",
        )
        .bind(stale_before)
        .fetch_all(&self.pool)
        .await
        .map_err(db(OP, target))?;
        Ok((requeued, failed))
    }
}
