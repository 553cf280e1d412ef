//! The jobs pages (researcher): launch a backtest, an evolve run or a training run, watch its
//! progress (the page reloads itself every two seconds while the job is not over), cancel it.

use super::*;
use crate::api_jobs::{self, JobView};
use crate::jobs::{BacktestJob, EvolveJob, JobRequest, TrainJob};

async fn inputs_of(s: &AppState) -> (Vec<String>, Vec<String>, Vec<String>) {
    match api_jobs::inputs(State(s.clone())).await {
        Ok(Json(i)) => (i.datasets, i.features, i.strategies),
        Err(_) => Default::default(),
    }
}

fn progress(j: &JobView) -> Markup {
    html! {
        @if j.progress.total > 0 {
            progress max=(j.progress.total) value=(j.progress.done) {}
            " " (j.progress.done) " / " (j.progress.total)
        } @else if j.state == "running" {
            "running"
        }
        @if let Some(n) = &j.progress.note { " · " (n) }
    }
}

fn state_class(state: &str) -> &'static str {
    match state {
        "failed" => "status-bad",
        "succeeded" => "status-ok",
        _ => "",
    }
}

pub(super) async fn jobs(State(s): State<AppState>, Extension(c): Extension<Caller>) -> Response {
    let rows = match s.store.list_jobs(None, 100, None).await {
        Ok(r) => r,
        Err(e) => return api_error_page(e.into(), &c),
    };
    let (datasets, features, strategies) = inputs_of(&s).await;
    let rows: Vec<JobView> = rows.into_iter().map(JobView::from).collect();
    let body = html! {
        @if s.jobs.is_none() {
            p.error { "This server runs no jobs (it was started with --no-jobs)." }
        }
        table.data {
            thead { tr { th { "Job" } th { "Kind" } th { "State" } th { "Progress" } th { "By" } th { "Queued (UTC)" } } }
            tbody { @for j in &rows {
                tr {
                    td { a href=(format!("/jobs/{}", j.id)) { "#" (j.id) } }
                    td { (j.kind) }
                    td class=(state_class(&j.state)) { (j.state) }
                    td { (progress(j)) }
                    td { (j.created_by) }
                    td { (when(j.created_at)) }
                }
            } }
        }
        @if s.jobs.is_some() {
            datalist id="datasets" { @for d in &datasets { option value=(d) {} } }
            datalist id="features" { @for f in &features { option value=(f) {} } }
            datalist id="strategies" { @for n in &strategies { option value=(n) {} } }
            h2 { "Backtest" }
            form.card method="post" action="/jobs" {
                input type="hidden" name="kind" value="backtest";
                label { "Dataset (under the data root)" input name="dataset" list="datasets" required; }
                label { "Strategy" input name="strategy" list="strategies" required; }
                label { "Parameters (JSON; empty: the defaults)" textarea name="params" rows="2" {} }
                label { "Seed" input name="seed" inputmode="numeric" placeholder="1"; }
                label { "Config (TOML; empty: the defaults)" textarea name="config" rows="3" {} }
                label { "Model (registry name, for a model-driven strategy)" input name="model"; }
                button type="submit" { "Launch the backtest" }
            }
            h2 { "Evolve" }
            form.card method="post" action="/jobs" {
                input type="hidden" name="kind" value="evolve";
                label { "Dataset (under the data root)" input name="dataset" list="datasets" required; }
                label { "Strategy" input name="strategy" list="strategies" required; }
                label { "Experiment name (default: STRATEGY-jobID)" input name="name"; }
                label { "Seed" input name="seed" inputmode="numeric" placeholder="1"; }
                label { "Population" input name="population" inputmode="numeric"; }
                label { "Generations" input name="generations" inputmode="numeric"; }
                label { "Folds" input name="folds" inputmode="numeric"; }
                label { "Config (TOML; empty: the defaults)" textarea name="config" rows="3" {} }
                label { "Model (registry name, for a model-driven strategy)" input name="model"; }
                button type="submit" { "Launch the evolve run" }
            }
            h2 { "Train" }
            form.card method="post" action="/jobs" {
                input type="hidden" name="kind" value="train";
                label { "Feature folder (under the data root)" input name="features" list="features" required; }
                label { "Model" select name="model" { @for m in ["linear", "mlp", "gru", "transformer"] { option { (m) } } } }
                label { "Task" select name="task" { option { "regression" } option { "classification" } } }
                label { "Target column (default: the task's first)" input name="target"; }
                label { "Registry name (default: MODEL-TASK-jobID)" input name="name"; }
                label { "Seed" input name="seed" inputmode="numeric" placeholder="1"; }
                label { "Epochs" input name="epochs" inputmode="numeric"; }
                label { "Hyperparameters (TOML)" textarea name="config" rows="3" {} }
                button type="submit" { "Launch the training run" }
            }
        }
    };
    html_response(StatusCode::OK, layout("Jobs", Some(&c), body))
}

/// The launch forms' fields (each form sends its own).
#[derive(Deserialize)]
pub(super) struct LaunchForm {
    kind: String,
    dataset: Option<String>,
    features: Option<String>,
    strategy: Option<String>,
    params: Option<String>,
    seed: Option<String>,
    config: Option<String>,
    model: Option<String>,
    name: Option<String>,
    population: Option<String>,
    generations: Option<String>,
    folds: Option<String>,
    task: Option<String>,
    target: Option<String>,
    epochs: Option<String>,
}

fn filled(o: Option<String>) -> Option<String> {
    o.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn number<T: std::str::FromStr>(field: &str, o: Option<String>) -> Result<Option<T>, String> {
    filled(o)
        .map(|v| {
            v.parse()
                .map_err(|_| format!("The {field} is a whole number, not {v:?}."))
        })
        .transpose()
}

fn request_of(f: LaunchForm) -> Result<JobRequest, String> {
    let need =
        |field: &str, o: Option<String>| filled(o).ok_or_else(|| format!("Give the {field}."));
    Ok(match f.kind.as_str() {
        "backtest" => JobRequest::Backtest(BacktestJob {
            dataset: need("dataset", f.dataset)?,
            strategy: need("strategy", f.strategy)?,
            params: match filled(f.params) {
                None => Default::default(),
                Some(t) => serde_json::from_str(&t)
                    .map_err(|e| format!("The parameters are not a JSON object: {e}"))?,
            },
            seed: number("seed", f.seed)?,
            config: filled(f.config),
            model: filled(f.model),
        }),
        "evolve" => JobRequest::Evolve(EvolveJob {
            dataset: need("dataset", f.dataset)?,
            strategy: need("strategy", f.strategy)?,
            config: filled(f.config),
            seed: number("seed", f.seed)?,
            model: filled(f.model),
            population: number("population", f.population)?,
            generations: number("generations", f.generations)?,
            folds: number("folds", f.folds)?,
            name: filled(f.name),
        }),
        "train" => JobRequest::Train(TrainJob {
            features: need("feature folder", f.features)?,
            model: need("model", f.model)?,
            task: need("task", f.task)?,
            target: filled(f.target),
            seed: number("seed", f.seed)?,
            epochs: number("epochs", f.epochs)?,
            config: filled(f.config),
            name: filled(f.name),
        }),
        other => return Err(format!("There is no job kind {other:?}.")),
    })
}

pub(super) async fn launch_form(
    State(s): State<AppState>,
    ip: ClientIp,
    Extension(c): Extension<Caller>,
    form: Result<Form<LaunchForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return error_page(StatusCode::BAD_REQUEST, Some(&c), "The form is incomplete.");
    };
    let req = match request_of(f) {
        Ok(r) => r,
        Err(m) => return error_page(StatusCode::BAD_REQUEST, Some(&c), &m),
    };
    let body = match serde_json::to_value(&req) {
        Ok(b) => b,
        Err(e) => return api_error_page(ApiError::internal("job request", &e), &c),
    };
    match api_jobs::launch(State(s), ip, Extension(c.clone()), ApiJson(body)).await {
        Ok((_, Json(j))) => Redirect::to(&format!("/jobs/{}", j.id)).into_response(),
        Err(e) => api_error_page(e, &c),
    }
}

pub(super) async fn job(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Response {
    let j = match api_jobs::job(State(s), ApiPath(id)).await {
        Ok(Json(j)) => j,
        Err(e) => return api_error_page(e, &c),
    };
    let over = matches!(j.state.as_str(), "succeeded" | "failed" | "cancelled");
    let spec = serde_json::to_string_pretty(&j.spec).unwrap_or_default();
    let result = j
        .result
        .as_ref()
        .map(|r| serde_json::to_string_pretty(r).unwrap_or_default());
    let experiment = j.result.as_ref().and_then(|r| r["experiment_id"].as_i64());
    let model = j.result.as_ref().and_then(|r| r["model_name"].as_str());
    let body = html! {
        @if !over {
            // Reloads while the job is not over; nothing to do once it is.
            meta http-equiv="refresh" content="2";
        }
        table.kv {
            tr { th { "Kind" } td { (j.kind) } }
            tr { th { "State" } td class=(state_class(&j.state)) id="job-state" { (j.state) @if j.cancel_requested && !over { " (cancelling)" } } }
            tr { th { "Progress" } td id="job-progress" { (progress(&j)) } }
            tr { th { "By" } td { (j.created_by) } }
            tr { th { "Queued (UTC)" } td { (when(j.created_at)) } }
            @if let Some(t) = j.started_at { tr { th { "Started (UTC)" } td { (when(t)) } } }
            @if let Some(t) = j.finished_at { tr { th { "Ended (UTC)" } td { (when(t)) } } }
            tr { th { "Attempts" } td { (j.attempts) } }
            @if let Some(e) = experiment { tr { th { "Experiment" } td { a href=(format!("/experiments/{e}")) { "#" (e) } } } }
            @if let Some(m) = model { tr { th { "Model" } td { a href="/models" { (m) } } } }
        }
        @if let Some(e) = &j.error { h2 { "Error" } pre.error { (e) } }
        @if !over {
            form.inline method="post" action=(format!("/jobs/{id}/cancel")) {
                button.danger type="submit" { "Cancel the job" }
            }
        }
        @if let Some(r) = &result { h2 { "Result" } pre { (r) } }
        h2 { "Request" }
        pre { (spec) }
        @if let Some(lines) = &j.log_tail {
            @if !lines.is_empty() {
                h2 { "Log (last lines)" }
                pre { @for l in lines { (l) "\n" } }
            }
        }
    };
    html_response(
        StatusCode::OK,
        layout(&format!("Job #{id}"), Some(&c), body),
    )
}

pub(super) async fn cancel_form(
    State(s): State<AppState>,
    ip: ClientIp,
    Extension(c): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Response {
    match api_jobs::cancel(State(s), ip, Extension(c.clone()), ApiPath(id)).await {
        Ok(_) => Redirect::to(&format!("/jobs/{id}")).into_response(),
        Err(e) => api_error_page(e, &c),
    }
}
