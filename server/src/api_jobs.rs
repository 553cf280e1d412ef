//! The jobs API: launch a backtest, an evolve run or a training run, watch it, cancel it
//! (researcher). See [`crate::jobs`] for the runner.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use dexlab_store::{JobRow, JobState, NewJob};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::api::{audit, int_param, page_limit};
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::jobs::{self, JobRequest};
use crate::{AppState, ClientIp, now};

/// A job's progress as its command last reported it.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobProgress {
    pub done: u64,
    /// 0 while unknown (training reports none).
    pub total: u64,
    pub note: Option<String>,
}

/// A job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub id: i64,
    /// `backtest`, `evolve` or `train`.
    pub kind: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// The request as launched, with the paths it resolved to.
    #[schema(value_type = Object)]
    pub spec: Value,
    pub created_by: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// How often a runner started it (more than once when a server stopped while it ran).
    pub attempts: i64,
    /// The runner that holds (or last held) it: a server's, or a queue worker's
    /// (`worker HOST-PID`).
    pub runner: Option<String>,
    pub cancel_requested: bool,
    pub progress: JobProgress,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    /// What it produced: `experiment_id`, `model_id`, or a backtest's metrics.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// The last lines it wrote on stderr (only on GET /api/v1/jobs/{id}).
    pub log_tail: Option<Vec<String>>,
}

impl From<JobRow> for JobView {
    fn from(j: JobRow) -> Self {
        JobView {
            id: j.id,
            kind: j.kind.as_str().to_owned(),
            state: j.state.as_str().to_owned(),
            spec: j.spec,
            created_by: j.created_by,
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            attempts: j.attempts,
            runner: j.runner,
            cancel_requested: j.cancel_requested,
            progress: JobProgress {
                done: j.progress_done,
                total: j.progress_total,
                note: j.progress_note,
            },
            exit_code: j.exit_code,
            error: j.error,
            result: j.result,
            log_tail: None,
        }
    }
}

/// Which jobs.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// Only jobs in this state.
    #[param(value_type = Option<String>, pattern = "^(queued|running|succeeded|failed|cancelled)$")]
    pub state: Option<String>,
    /// 1 to 500 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// Only jobs older than this id (the last id of the previous page).
    #[param(value_type = Option<i64>)]
    pub before: Option<String>,
}

/// Jobs, newest first (researcher).
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", params(JobQuery),
    security(("bearer" = [])),
    responses((status = 200, body = [JobView]), (status = 400, body = ApiError)))]
pub async fn list_jobs(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<JobQuery>,
) -> Result<Json<Vec<JobView>>, ApiError> {
    let limit = page_limit(q.limit.as_deref())?;
    let before = int_param("before", q.before.as_deref())?;
    let state = match q.state.as_deref() {
        None => None,
        Some(v) => Some(JobState::from_name(v).ok_or_else(|| {
            ApiError::bad_request(format!(
                "state must be queued, running, succeeded, failed or cancelled, got {v:?}"
            ))
        })?),
    };
    let rows = s.store.list_jobs(state, limit, before).await?;
    Ok(Json(rows.into_iter().map(JobView::from).collect()))
}

fn runner(s: &AppState) -> Result<&jobs::Jobs, ApiError> {
    s.jobs.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "jobs_disabled",
            "this server runs no jobs (it was started with --no-jobs)",
        )
    })
}

/// Launch a backtest, an evolve run or a training run (researcher). The request is checked
/// before it is queued; the job then runs when a slot is free.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", request_body = JobRequest,
    security(("bearer" = [])),
    responses((status = 202, body = JobView), (status = 400, body = ApiError),
        (status = 409, body = ApiError)))]
pub async fn launch(
    State(s): State<AppState>,
    ip: ClientIp,
    Extension(c): Extension<Caller>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let req = JobRequest::from_json(body)?;
    let runner = runner(&s)?;
    let spec = jobs::check(&runner.config, &s.store, &req).await?;
    let row = s
        .store
        .add_job(&NewJob {
            kind: req.kind(),
            spec: spec.clone(),
            created_by: c.username.clone(),
            created_by_id: Some(c.id),
            created_at: now(),
        })
        .await?;
    s.store
        .add_audit(&audit(
            "job_launched",
            Some(&c),
            Some(format!("job {}", row.id)),
            json!({ "kind": row.kind.as_str(), "spec": spec }),
            &ip,
        ))
        .await?;
    runner.wake();
    Ok((StatusCode::ACCEPTED, Json(row.into())))
}

async fn job_row(s: &AppState, id: i64) -> Result<JobRow, ApiError> {
    s.store
        .job(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))
}

/// A job, with the last lines of its log (researcher).
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = JobView), (status = 400, body = ApiError),
        (status = 404, body = ApiError)))]
pub async fn job(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<JobView>, ApiError> {
    let row = job_row(&s, id).await?;
    let tail = s.jobs.as_ref().map(|j| j.log_tail(&row));
    let mut view = JobView::from(row);
    view.log_tail = tail;
    Ok(Json(view))
}

/// Cancel a job (researcher): a queued job ends at once, a running one is stopped by its
/// runner within seconds. 409 when it has already ended.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 202, body = JobView), (status = 400, body = ApiError),
        (status = 404, body = ApiError), (status = 409, body = ApiError)))]
pub async fn cancel(
    State(s): State<AppState>,
    ip: ClientIp,
    Extension(c): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let before = job_row(&s, id).await?;
    if before.state.is_final() {
        return Err(ApiError::conflict(format!(
            "job {id} has already ended ({})",
            before.state.as_str()
        )));
    }
    let row = s.store.cancel_job(id, now()).await?;
    s.store
        .add_audit(&audit(
            "job_cancelled",
            Some(&c),
            Some(format!("job {id}")),
            json!({ "kind": row.kind.as_str(), "state_before": before.state.as_str() }),
            &ip,
        ))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(row.into())))
}

/// What jobs can read under the server's data root.
#[derive(Debug, Serialize, ToSchema)]
pub struct Inputs {
    /// Dataset folders (for backtests and evolve runs), by path under the data root.
    pub datasets: Vec<String>,
    /// Feature folders (for training runs).
    pub features: Vec<String>,
    pub strategies: Vec<String>,
}

/// Datasets, feature folders and strategies a job can use (researcher).
#[utoipa::path(get, path = "/api/v1/datasets", tag = "jobs", security(("bearer" = [])),
    responses((status = 200, body = Inputs), (status = 409, body = ApiError)))]
pub async fn inputs(State(s): State<AppState>) -> Result<Json<Inputs>, ApiError> {
    let runner = runner(&s)?;
    let cfg = runner.config.clone();
    let (datasets, features) = tokio::task::spawn_blocking(move || cfg.inputs())
        .await
        .map_err(|e| ApiError::internal("listing datasets", &e))?;
    Ok(Json(Inputs {
        datasets,
        features,
        strategies: dexlab_strategy::registry::list()
            .iter()
            .map(|s| s.name.to_owned())
            .collect(),
    }))
}
