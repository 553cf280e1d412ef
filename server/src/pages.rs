//! The dashboard: server-rendered HTML (maud escapes every value), its stylesheet embedded in the
//! binary, no script but the live page's.
//!
//! Pages authenticate with two cookies set at login, both `HttpOnly` and `SameSite=Strict`
//! (`Secure` under TLS): the access token and the refresh token. A page request whose access
//! token has expired rotates the refresh token on the spot; concurrent requests holding the same
//! refresh token (a page and its images) share one rotation instead of tripping reuse
//! detection. Forms that change something are also checked for a same-origin `Origin` header.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use dexlab_store::Role;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::api::{self, ExperimentQuery, ReasonBody, TokenResponse};
use crate::auth::{Caller, token_hash};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::routes::{Access, Gate, Kind, Route, authorize_token};
use crate::{AppState, ClientIp};

mod jobs;
mod oidc;

const ACCESS_COOKIE: &str = "dexlab_access";
const REFRESH_COOKIE: &str = "dexlab_refresh";
/// How long concurrent requests may share one rotation of a refresh token.
const ROTATION_GRACE: Duration = Duration::from_secs(10);
const CSS: &str = include_str!("../assets/app.css");
const LIVE_JS: &str = include_str!("../assets/live.js");

fn page(
    method: Method,
    path: &'static str,
    access: Access,
    handler: axum::routing::MethodRouter<AppState>,
) -> Route {
    Route::new(Kind::Page, method, path, access, handler)
}

/// The dashboard's routes.
pub fn table() -> Vec<Route> {
    use Access::{Public, Role as R};
    use Role::{Admin, Operator, Researcher, Viewer};
    vec![
        page(
            Method::GET,
            "/",
            Public,
            get(|| async { Redirect::to("/experiments") }),
        ),
        page(Method::GET, "/assets/app.css", Public, get(css)),
        page(Method::GET, "/login", Public, get(login_page)),
        page(Method::POST, "/login", Public, post(login_form)),
        page(Method::POST, "/logout", R(Viewer), post(logout_form)),
        page(Method::GET, "/experiments", R(Viewer), get(experiments)),
        page(
            Method::GET,
            "/experiments/{experiment}",
            R(Viewer),
            get(experiment),
        ),
        page(
            Method::GET,
            "/experiments/{experiment}/chart/{chart}",
            R(Viewer),
            get(chart),
        ),
        page(Method::GET, "/models", R(Viewer), get(models)),
        page(Method::GET, "/models/compare", R(Viewer), get(compare)),
        page(Method::GET, "/deployments", R(Viewer), get(deployments)),
        page(
            Method::POST,
            "/deployments",
            R(Operator),
            post(promote_form),
        ),
        page(
            Method::GET,
            "/deployments/{deployment}",
            R(Viewer),
            get(deployment),
        ),
        page(
            Method::POST,
            "/deployments/{deployment}/rollback",
            R(Operator),
            post(rollback_form),
        ),
        page(Method::GET, "/live", R(Viewer), get(live_list)),
        page(Method::GET, "/live/{id}", R(Viewer), get(live_session)),
        page(
            Method::POST,
            "/live/{id}/kill",
            R(Operator),
            post(kill_form),
        ),
        page(
            Method::POST,
            "/live/{id}/clear",
            R(Operator),
            post(clear_form),
        ),
        page(
            Method::GET,
            "/ws/live",
            R(Viewer),
            get(crate::events::live_socket),
        ),
        page(Method::GET, "/assets/live.js", Public, get(live_js)),
        page(Method::GET, "/users", R(Admin), get(users)),
        page(Method::POST, "/users", R(Admin), post(add_user_form)),
        page(
            Method::POST,
            "/users/{id}",
            R(Admin),
            post(change_user_form),
        ),
        page(Method::GET, "/audit", R(Admin), get(audit)),
        page(Method::GET, "/jobs", R(Researcher), get(jobs::jobs)),
        page(
            Method::POST,
            "/jobs",
            R(Researcher),
            post(jobs::launch_form),
        ),
        page(Method::GET, "/jobs/{id}", R(Researcher), get(jobs::job)),
        page(
            Method::POST,
            "/jobs/{id}/cancel",
            R(Researcher),
            post(jobs::cancel_form),
        ),
        page(Method::GET, "/auth/oidc/start", Public, get(oidc::start)),
        page(
            Method::GET,
            "/auth/oidc/callback",
            Public,
            get(oidc::callback),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Cookies and the gate

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .expect("tokens are URL-safe")
}

fn with_tokens(mut r: Response, t: &TokenResponse, secure: bool) -> Response {
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(ACCESS_COOKIE, &t.access_token, t.expires_in, secure),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(
            REFRESH_COOKIE,
            &t.refresh_token,
            t.refresh_expires_in,
            secure,
        ),
    );
    r
}

fn without_tokens(mut r: Response, secure: bool) -> Response {
    let h = r.headers_mut();
    h.append(header::SET_COOKIE, set_cookie(ACCESS_COOKIE, "", 0, secure));
    h.append(
        header::SET_COOKIE,
        set_cookie(REFRESH_COOKIE, "", 0, secure),
    );
    r
}

/// One rotation's outcome, shared by the requests that wait for it.
type Rotation = Arc<OnceCell<Result<TokenResponse, ApiError>>>;

/// Rotations in progress or just done, by refresh-token hash.
#[derive(Default)]
pub struct Rotations {
    map: Mutex<HashMap<String, (Instant, Rotation)>>,
}

impl Rotations {
    async fn rotate(
        &self,
        s: &AppState,
        ip: &ClientIp,
        token: &str,
    ) -> Result<TokenResponse, ApiError> {
        let cell = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            map.retain(|_, (at, _)| now.duration_since(*at) < ROTATION_GRACE);
            map.entry(token_hash(token))
                .or_insert_with(|| (now, Arc::new(OnceCell::new())))
                .1
                .clone()
        };
        cell.get_or_init(|| api::rotate(s, ip, token)).await.clone()
    }
}

/// Whether a form post comes from a page of this server (`Origin`, else `Sec-Fetch-Site`).
fn same_origin(req: &Request) -> bool {
    let h = req.headers();
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    // A browser sends `Origin: null` under some referrer policies: then Sec-Fetch-Site tells.
    match h
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|o| *o != "null")
    {
        Some(origin) => {
            let bare = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            bare.is_some() && bare == host
        }
        None => h
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v == "same-origin" || v == "none"),
    }
}

/// The gate of the pages: cookies instead of a bearer header, a redirect to the login page
/// instead of 401, an HTML 403.
pub async fn gate(State(g): State<Gate>, mut req: Request, next: Next) -> Response {
    let s = g.state.clone();
    let secure = s.config.hsts;
    if req.method() != Method::GET && !same_origin(&req) {
        return error_page(
            StatusCode::FORBIDDEN,
            None,
            "This form was sent from another site, so it was refused.",
        );
    }
    let min = match g.access {
        Access::Public => return next.run(req).await,
        Access::Role(r) => r,
        Access::Metrics => Role::Viewer,
    };
    let ip = ClientIp::of(req.extensions());
    let access = cookie(req.headers(), ACCESS_COOKIE).map(str::to_owned);
    let refresh = cookie(req.headers(), REFRESH_COOKIE).map(str::to_owned);
    let mut renewed = None;
    let mut outcome = authorize_token(&s, &ip, access.as_deref(), min).await;
    if let (Err(e), Some(refresh)) = (&outcome, &refresh)
        && e.status == StatusCode::UNAUTHORIZED
        && e.error != "account_disabled"
    {
        outcome = match s.rotations.rotate(&s, &ip, refresh).await {
            Ok(t) => {
                let r = authorize_token(&s, &ip, Some(&t.access_token), min).await;
                renewed = Some(t);
                r
            }
            Err(e) => Err(e),
        };
    }
    let response = match outcome {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) if e.status == StatusCode::FORBIDDEN => {
            error_page(StatusCode::FORBIDDEN, None, &e.message)
        }
        Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => {
            error_page(StatusCode::TOO_MANY_REQUESTS, None, &e.message)
        }
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let target = if req.method() == Method::GET {
                path
            } else {
                "/"
            };
            let to = format!("/login?next={}", encode_component(target));
            return without_tokens(Redirect::to(&to).into_response(), secure);
        }
        Err(e) => e.into_response(),
    };
    match renewed {
        Some(t) => with_tokens(response, &t, secure),
        None => response,
    }
}

fn encode_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A local path to go to after login: anything else (another site, `//host`) is `/`.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/experiments",
    }
}

// ---------------------------------------------------------------------------------------------
// Layout

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
}

async fn live_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        LIVE_JS,
    )
}

fn layout(title: &str, caller: Option<&Caller>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · dexlab" }
                link rel="stylesheet" href="/assets/app.css";
            }
            body {
                header {
                    nav {
                        a.brand href="/experiments" { "dexlab" }
                        @if let Some(c) = caller {
                            a href="/experiments" { "Experiments" }
                            a href="/models" { "Models" }
                            a href="/deployments" { "Deployments" }
                            a href="/live" { "Live" }
                            @if c.role >= Role::Researcher {
                                a href="/jobs" { "Jobs" }
                            }
                            @if c.role >= Role::Admin {
                                a href="/users" { "Users" }
                                a href="/audit" { "Audit" }
                            }
                            span.who { (c.username) " · " (c.role) }
                            form.inline method="post" action="/logout" {
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

fn html_response(status: StatusCode, m: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        m.into_string(),
    )
        .into_response()
}

fn error_page(status: StatusCode, caller: Option<&Caller>, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    html_response(
        status,
        layout(title, caller, html! { p.error { (message) } }),
    )
}

fn api_error_page(e: ApiError, caller: &Caller) -> Response {
    error_page(e.status, Some(caller), &e.message)
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |x| format!("{x:.4}"))
}

fn when(unix: i64) -> String {
    // UTC, to the second, without a date crate: days since the epoch to a civil date.
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

// ---------------------------------------------------------------------------------------------
// Login

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

fn login_markup(s: &AppState, next: &str, error: Option<&str>) -> Markup {
    layout(
        "Log in",
        None,
        html! {
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form.card method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                label { "Username" input name="username" autocomplete="username" required autofocus; }
                label { "Password" input name="password" type="password" autocomplete="current-password" required; }
                button type="submit" { "Log in" }
            }
            @if let Some(name) = s.oidc.name() {
                p { a.button href=(format!("/auth/oidc/start?next={}", encode_component(next))) { "Log in with " (name) } }
            }
        },
    )
}

async fn login_page(State(s): State<AppState>, ApiQuery(q): ApiQuery<NextQuery>) -> Response {
    html_response(
        StatusCode::OK,
        login_markup(&s, safe_next(q.next.as_deref()), None),
    )
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

async fn login_form(
    State(s): State<AppState>,
    ip: ClientIp,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return html_response(
            StatusCode::BAD_REQUEST,
            login_markup(&s, "/experiments", Some("Give a username and a password.")),
        );
    };
    let next = safe_next(f.next.as_deref()).to_owned();
    match api::password_login(&s, &ip, &f.username, f.password).await {
        Ok(t) => with_tokens(Redirect::to(&next).into_response(), &t, s.config.hsts),
        Err(e) => html_response(e.status, login_markup(&s, &next, Some(&e.message))),
    }
}

async fn logout_form(
    State(s): State<AppState>,
    ip: ClientIp,
    Extension(c): Extension<Caller>,
) -> Response {
    let secure = s.config.hsts;
    match api::logout(State(s), ip, Extension(c.clone())).await {
        Ok(_) => without_tokens(Redirect::to("/login").into_response(), secure),
        Err(e) => api_error_page(e, &c),
    }
}

// ---------------------------------------------------------------------------------------------
// Experiments

async fn experiments(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    q: Result<ApiQuery<ExperimentQuery>, ApiError>,
    raw: axum::extract::RawQuery,
) -> Response {
    let q = match q {
        Ok(ApiQuery(q)) => q,
        Err(e) => return api_error_page(e, &c),
    };
    let (status, strategy, text) = (q.status.clone(), q.strategy.clone(), q.q.clone());
    let page = match api::list_experiments(State(s), ApiQuery(q)).await {
        Ok(Json(p)) => p,
        Err(e) => return api_error_page(e, &c),
    };
    let raw = raw.0.unwrap_or_default();
    let with = |key: &str, value: &str| -> String {
        let mut parts: Vec<String> = raw
            .split('&')
            .filter(|kv| {
                !kv.is_empty() && kv.split('=').next() != Some(key) && !kv.starts_with("offset=")
            })
            .map(str::to_owned)
            .collect();
        parts.push(format!("{key}={}", encode_component(value)));
        format!("/experiments?{}", parts.join("&"))
    };
    let next_offset = page.offset + page.limit;
    let body = html! {
        form.filters method="get" action="/experiments" {
            label { "Status "
                select name="status" {
                    option value="" { "any" }
                    @for st in ["running", "done", "failed", "interrupted"] {
                        option value=(st) selected[status.as_deref() == Some(st)] { (st) }
                    }
                }
            }
            label { "Strategy " input name="strategy" value=(strategy.unwrap_or_default()); }
            label { "Search " input name="q" value=(text.unwrap_or_default()); }
            button type="submit" { "Filter" }
        }
        p { (page.total) " experiments" }
        table.data {
            thead { tr {
                th { a href=(with("sort", "id")) { "Id" } }
                th { a href=(with("sort", "name")) { "Name" } }
                th { "Strategy" } th { "Dataset" } th { "Status" }
                th.num { a href=(with("sort", "oos_pnl")) { "Out-of-sample net PnL" } }
                th.num { "Not trading" }
                th { a href=(with("sort", "created_at")) { "Created (UTC)" } }
            } }
            tbody {
                @for e in &page.items {
                    tr {
                        td { (e.id) }
                        td { a href=(format!("/experiments/{}", e.id)) { (e.name) } }
                        td { (e.strategy) } td { (e.dataset) } td { (e.status) }
                        td.num { (num(e.oos_net_pnl_quote)) }
                        td.num { (num(e.oos_net_pnl_quote_no_trade)) }
                        td { (when(e.created_at)) }
                    }
                }
            }
        }
        nav.pages {
            @if page.offset > 0 {
                a href=(with("offset", &page.offset.saturating_sub(page.limit).to_string())) { "← newer" }
            }
            @if (next_offset as usize) < page.total {
                a href=(with("offset", &next_offset.to_string())) { "older →" }
            }
        }
    };
    html_response(StatusCode::OK, layout("Experiments", Some(&c), body))
}

async fn experiment(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
) -> Response {
    let Some(row) = s.store.find_experiment(&name).await.ok().flatten() else {
        return error_page(
            StatusCode::NOT_FOUND,
            Some(&c),
            &format!("No experiment {name:?}."),
        );
    };
    let input = match dexlab_lab::report::input(&s.store, &row.id.to_string()).await {
        Ok(i) => i,
        Err(e) => return api_error_page(e.into(), &c),
    };
    let detail = match s.store.experiment_detail(row.id).await {
        Ok(d) => d,
        Err(e) => return api_error_page(e.into(), &c),
    };
    let config = serde_json::to_string_pretty(&row.config).unwrap_or_default();
    let body = html! {
        table.kv { @for (k, v) in &input.summary { tr { th { (k) } td { (v) } } } }
        h2 { "Out of sample, next to every baseline" }
        table.data {
            thead { tr { @for h in &input.results.headers { th { (h) } } } }
            tbody { @for r in &input.results.rows { tr { @for cell in r { td { (cell) } } } } }
        }
        h2 { "Walk-forward folds" }
        table.data {
            thead { tr { th { "Fold" } th { "Trained on blocks" } th { "Tested on blocks" } } }
            tbody { @for f in &detail.folds {
                tr { td { (f.fold) } td { (f.train_from) "–" (f.train_to) } td { (f.test_from) "–" (f.test_to) } }
            } }
        }
        @for stem in dexlab_report::CHART_STEMS {
            figure {
                img src=(format!("/experiments/{}/chart/{stem}", row.id)) alt=(stem) loading="lazy";
            }
        }
        h2 { "Config" }
        pre { (config) }
    };
    html_response(
        StatusCode::OK,
        layout(&format!("Experiment {}", row.name), Some(&c), body),
    )
}

async fn chart(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiPath((name, stem)): ApiPath<(String, String)>,
) -> Response {
    let input = match dexlab_lab::report::input(&s.store, &name).await {
        Ok(i) => i,
        Err(e) => return api_error_page(e.into(), &c),
    };
    let options = dexlab_report::ReportOptions {
        width: 960,
        height: 540,
    };
    match tokio::task::spawn_blocking(move || dexlab_report::svg_chart(&input, &stem, &options))
        .await
    {
        Ok(Some(Ok(chart))) => (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "private, max-age=60"),
            ],
            chart.svg,
        )
            .into_response(),
        Ok(None) => error_page(StatusCode::NOT_FOUND, Some(&c), "No such chart."),
        Ok(Some(Err(e))) => api_error_page(ApiError::internal("chart", &e), &c),
        Err(e) => api_error_page(ApiError::internal("chart", &e), &c),
    }
}

// ---------------------------------------------------------------------------------------------
// Models

async fn models(State(s): State<AppState>, Extension(c): Extension<Caller>) -> Response {
    let listed = match dexlab_lab::registry::list(&s.store).await {
        Ok(l) => l,
        Err(e) => return api_error_page(e.into(), &c),
    };
    let body = html! {
        form method="get" action="/models/compare" {
            table.data {
                thead { tr {
                    th { "Compare" } th { "Name" } th { "Kind" } th { "Target" }
                    th.num { "Test loss" } th { "Best baseline" } th.num { "Its loss" } th { "Retired" }
                } }
                tbody { @for l in &listed {
                    tr {
                        td { input type="checkbox" name="m" value=(l.row.id); }
                        td { (l.row.model.name) }
                        td { (l.row.model.kind.as_str()) }
                        td { (l.row.model.target) }
                        @if let Some(h) = &l.headline {
                            td.num { (num(Some(h.model))) " " (h.metric) }
                            td { (h.best_baseline.as_ref().map_or("–", |b| b.name.as_str())) }
                            td.num { (num(h.best_baseline.as_ref().map(|b| b.value))) }
                        } @else if let Some((mine, base, theirs)) = &l.agent_headline {
                            td.num { (num(Some(*mine))) " net PnL" }
                            td { (base) }
                            td.num { (num(Some(*theirs))) }
                        } @else {
                            td { "–" } td { "–" } td { "–" }
                        }
                        td { (if l.row.retired.is_some() { "yes" } else { "" }) }
                    }
                } }
            }
            button type="submit" { "Compare side by side" }
        }
    };
    html_response(StatusCode::OK, layout("Models", Some(&c), body))
}

async fn compare(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    raw: axum::extract::RawQuery,
) -> Response {
    let ids: Vec<String> = raw
        .0
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.strip_prefix("m="))
        .map(str::to_owned)
        .collect();
    if ids.is_empty() || ids.len() > 10 {
        return error_page(
            StatusCode::BAD_REQUEST,
            Some(&c),
            "Pick one to ten models to compare.",
        );
    }
    let mut rows = Vec::new();
    for id in &ids {
        match dexlab_lab::registry::find(&s.store, id).await {
            Ok(r) => rows.push(r),
            Err(e) => return api_error_page(e.into(), &c),
        }
    }
    let cmp = dexlab_lab::registry::compare(&rows);
    let body = html! {
        @if !cmp.comparable {
            p.error { "Not comparable metric for metric: " (cmp.problems.join("; ")) }
        }
        table.data {
            thead { tr { th { "Model" } th { "Test blocks" } @for m in &cmp.metrics { th.num { (m) } } th { "Best baseline" } } }
            tbody { @for m in &cmp.models {
                tr {
                    td { (m.name) }
                    td { (m.test_split.as_ref().map_or("–".to_owned(), |t| format!("{}–{}", t.first_block, t.last_block))) }
                    @for k in &cmp.metrics { td.num { (num(m.metrics.get(k).copied().flatten())) } }
                    td { (m.best_baseline.as_ref().map_or("–".to_owned(), |b| format!("{} {} {:.4}", b.name, b.metric, b.value))) }
                }
                @for b in &m.baselines {
                    tr.baseline {
                        td { "↳ " (b.name) } td {}
                        @for k in &cmp.metrics { td.num { (num(b.metrics.get(k).copied().flatten())) } }
                        td {}
                    }
                }
            } }
        }
    };
    html_response(
        StatusCode::OK,
        layout("Models side by side", Some(&c), body),
    )
}

// ---------------------------------------------------------------------------------------------
// Deployments

async fn deployments(State(s): State<AppState>, Extension(c): Extension<Caller>) -> Response {
    let rows = match s.store.list_deployments().await {
        Ok(r) => r,
        Err(e) => return api_error_page(e.into(), &c),
    };
    let body = html! {
        table.data {
            thead { tr { th { "Name" } th { "Version" } th { "Strategy" } th { "Experiment" } th { "Model" } th { "By" } th { "When (UTC)" } } }
            tbody { @for d in &rows {
                tr {
                    td { a href=(format!("/deployments/{}", encode_component(&d.deployment.name))) { (d.deployment.name) } }
                    td { "v" (d.version) }
                    td { (d.deployment.strategy) }
                    td { (d.deployment.experiment_name.as_deref().unwrap_or("–")) }
                    td { (d.deployment.model_name.as_deref().unwrap_or("–")) }
                    td { (d.deployment.created_by) }
                    td { (when(d.deployment.created_at)) }
                }
            } }
        }
        @if c.role >= Role::Operator {
            h2 { "Promote an experiment" }
            form.card method="post" action="/deployments" {
                label { "Experiment (id or name)" input name="experiment" required; }
                label { "Deployment name" input name="name" required; }
                label { "Fold (default: the last)" input name="fold" inputmode="numeric"; }
                label { "Model (default: the experiment's)" input name="model"; }
                label { "Risk limits (JSON; empty: the defaults)" textarea name="risk" rows="4" {} }
                label.check { input type="checkbox" name="force" value="true"; " Promote even if it does not beat not trading" }
                label { "Note" input name="note"; }
                button type="submit" { "Promote" }
            }
        }
    };
    html_response(StatusCode::OK, layout("Deployments", Some(&c), body))
}

#[derive(Deserialize)]
struct PromoteForm {
    experiment: String,
    name: String,
    fold: Option<String>,
    model: Option<String>,
    risk: Option<String>,
    force: Option<String>,
    note: Option<String>,
}

async fn promote_form(
    State(s): State<AppState>,
    ip: ClientIp,
    Extension(c): Extension<Caller>,
    form: Result<Form<PromoteForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return error_page(StatusCode::BAD_REQUEST, Some(&c), "The form is incomplete.");
    };
    let nonempty = |o: Option<String>| o.filter(|v| !v.trim().is_empty());
    let fold = match nonempty(f.fold).map(|v| v.trim().parse::<u32>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                Some(&c),
                "The fold is a whole number.",
            );
        }
    };
    let risk: Value = match nonempty(f.risk) {
        None => Value::Object(Default::default()),
        Some(text) => match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    Some(&c),
                    &format!("The risk limits are not JSON: {e}"),
                );
            }
        },
    };
    let body = api::PromoteBody {
        experiment: f.experiment,
        name: f.name.clone(),
        fold,
        model: nonempty(f.model),
        risk,
        force: f.force.is_some(),
        note: nonempty(f.note),
    };
    match api::promote(State(s), ip, Extension(c.clone()), ApiJson(body)).await {
        Ok(_) => {
            Redirect::to(&format!("/deployments/{}", encode_component(&f.name))).into_response()
        }
        Err(e) => api_error_page(e, &c),
    }
}

async fn deployment(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
) -> Response {
    let rows = match s.store.deployment_versions(&name).await {
        Ok(r) if !r.is_empty() => r,
        Ok(_) => {
            return error_page(
                StatusCode::NOT_FOUND,
                Some(&c),
                &format!("No deployment {name:?}."),
            );
        }
        Err(e) => return api_error_page(e.into(), &c),
    };
    let body = html! {
        table.data {
            thead { tr { th { "Version" } th { "Replaces" } th { "Rollback of" } th { "Experiment" } th { "Fold" } th { "Model" } th { "Forced" } th { "By" } th { "When (UTC)" } th { "Note" } } }
            tbody { @for d in rows.iter().rev() {
                tr {
                    td { "v" (d.version) }
                    td { (d.replaces.map_or("–".to_owned(), |v| format!("v{v}"))) }
                    td { (d.rollback_of.map_or("–".to_owned(), |v| format!("v{v}"))) }
                    td { (d.deployment.experiment_name.as_deref().unwrap_or("–")) }
                    td { (d.deployment.fold.map_or("–".to_owned(), |f| f.to_string())) }
                    td { (d.deployment.model_name.as_deref().unwrap_or("–")) }
                    td { (if d.deployment.forced { "yes" } else { "" }) }
                    td { (d.deployment.created_by) }
                    td { (when(d.deployment.created_at)) }
                    td { (d.deployment.note.as_deref().unwrap_or("")) }
                }
            } }
        }
        @if c.role >= Role::Operator {
            form.card method="post" action=(format!("/deployments/{}/rollback", encode_component(&name))) {
                label { "Reason" input name="reason"; }
                button.danger type="submit" { "Roll back" }
            }
        }
    };
    html_response(
        StatusCode::OK,
        layout(&format!("Deployment {name}"), Some(&c), body),
    )
}

#[derive(Deserialize)]
struct ReasonForm {
    reason: Option<String>,
}

async fn rollback_form(
    State(s): State<AppState>,
    ip: ClientIp,
    Extension(c): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    form: Result<Form<ReasonForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let reason = form.ok().and_then(|Form(f)| f.reason);
    match api::rollback(
        State(s),
        ip,
        Extension(c.clone()),
        ApiPath(name.clone()),
        ApiJson(ReasonBody { reason }),
    )
    .await
    {
        Ok(_) => Redirect::to(&format!("/deployments/{}", encode_component(&name))).into_response(),
        Err(e) => api_error_page(e, &c),
    }
}

// ---------------------------------------------------------------------------------------------
// Live trading

async fn live_list(State(s): State<AppState>, Extension(c): Extension<Caller>) -> Response {
    let rows = match api::list_sessions(State(s)).await {
        Ok(Json(r)) => r,
        Err(e) => return api_error_page(e, &c),
    };
    let body = html! {
        table.data {
            thead { tr { th { "Id" } th { "Mode" } th { "Strategy" } th { "Status" } th.num { "Blocks" } th.num { "Last block" } th.num { "Bundles" } th.num { "Fills" } th { "Updated (UTC)" } } }
            tbody { @for r in &rows {
                tr {
                    td { a href=(format!("/live/{}", r.id)) { (r.id) } }
                    td { (r.mode) } td { (r.strategy) } td { (r.status) }
                    td.num { (r.blocks) } td.num { (r.last_block.map_or("–".to_owned(), |b| b.to_string())) }
                    td.num { (r.bundles) } td.num { (r.fills) } td { (when(r.updated_at)) }
                }
            } }
        }
    };
    html_response(StatusCode::OK, layout("Live", Some(&c), body))
}

async fn live_session(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Response {
    let detail = match api::session(State(s), ApiPath(id)).await {
        Ok(Json(d)) => d,
        Err(e) => return api_error_page(e, &c),
    };
    let v = &detail.session;
    let stat = |label: &str, key: &str| {
        html! {
            div.stat { span.label { (label) } span.value data-key=(key) { "–" } }
        }
    };
    let body = html! {
        p { (v.mode) " session of " strong { (v.strategy) } " on chain " (v.chain_id) ", " (v.status) ". Folder " code { (v.dir) } }
        div id="live" data-session=(v.id) {
            div.stats {
                (stat("Block", "block")) (stat("PnL (quote)", "pnl_quote")) (stat("Equity (quote)", "equity_quote"))
                (stat("Bundles", "bundles_total")) (stat("Fills", "fills_total")) (stat("Reverts (this run)", "reverts_this_run"))
                (stat("Engine µs", "step_us")) (stat("Halted", "halted")) (stat("Deployment", "deployment"))
            }
            p.connection { "Connecting…" }
            canvas id="pnl" width="960" height="220" {}
            h2 { "Spreads between venues" }
            table.data id="spreads" {
                thead { tr { th { "Pair" } th.num { "Pools" } th.num { "Widest gap (bps)" } } }
                tbody {}
            }
            h2 { "Recent blocks" }
            table.data id="events" {
                thead { tr { th { "Block" } th.num { "Sent" } th.num { "Filled" } th.num { "Reverted" } th.num { "Rejected" } th.num { "Expired" } th.num { "PnL" } th { "Risk" } } }
                tbody {}
            }
        }
        @if c.role >= Role::Operator {
            h2 { "Kill switch" }
            form.card method="post" action=(format!("/live/{}/kill", v.id)) {
                label { "Reason" input name="reason"; }
                button.danger id="kill" type="submit" { "Stop trading (kill switch)" }
            }
            form.card method="post" action=(format!("/live/{}/clear", v.id)) {
                label { "Halt to clear" select name="halt" { @for t in dexlab_store::TRIPS { option value=(t) { (t) } } } }
                label { "Reason" input name="reason"; }
                button type="submit" { "Clear the halt" }
            }
        }
        h2 { "Operators' commands" }
        pre { (serde_json::to_string_pretty(&detail.commands).unwrap_or_default()) }
        script src="/assets/live.js" {}
    };
    html_response(
        StatusCode::OK,
        layout(&format!("Session {}", v.id), Some(&c), body),
    )
}

#[derive(Deserialize)]
struct ClearForm {
    halt: String,
    reason: Option<String>,
}

async fn kill_form(
    State(s): State<AppState>,
    ip: ClientIp,
    Extension(c): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    form: Result<Form<ReasonForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let reason = form.ok().and_then(|Form(f)| f.reason);
    match api::kill(
        State(s),
        ip,
        Extension(c.clone()),
        ApiPath(id),
        ApiJson(ReasonBody { reason }),
    )
    .await
    {
        Ok(_) => Redirect::to(&format!("/live/{id}")).into_response(),
        Err(e) => api_error_page(e, &c),
    }
}

async fn clear_form(
    State(s): State<AppState>,
    ip: ClientIp,
    Extension(c): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    form: Result<Form<ClearForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return error_page(StatusCode::BAD_REQUEST, Some(&c), "Name the halt to clear.");
    };
    let body = api::ClearBody {
        halt: f.halt,
        reason: f.reason,
    };
    match api::clear(
        State(s),
        ip,
        Extension(c.clone()),
        ApiPath(id),
        ApiJson(body),
    )
    .await
    {
        Ok(_) => Redirect::to(&format!("/live/{id}")).into_response(),
        Err(e) => api_error_page(e, &c),
    }
}

// ---------------------------------------------------------------------------------------------
// Accounts and the audit log (admin)

async fn users(State(s): State<AppState>, Extension(c): Extension<Caller>) -> Response {
    let rows = match s.store.list_users().await {
        Ok(r) => r,
        Err(e) => return api_error_page(e.into(), &c),
    };
    let body = html! {
        table.data {
            thead { tr { th { "Id" } th { "Username" } th { "E-mail" } th { "Role" } th { "Disabled" } th { "Change" } } }
            tbody { @for u in &rows {
                tr {
                    td { (u.id) } td { (u.username) } td { (u.email.as_deref().unwrap_or("")) }
                    td { (u.role) } td { (if u.disabled { "yes" } else { "" }) }
                    td {
                        form.inline method="post" action=(format!("/users/{}", u.id)) {
                            select name="role" {
                                @for r in Role::ALL { option value=(r.as_str()) selected[r == u.role] { (r) } }
                            }
                            select name="disabled" {
                                option value="false" selected[!u.disabled] { "enabled" }
                                option value="true" selected[u.disabled] { "disabled" }
                            }
                            button type="submit" { "Save" }
                        }
                    }
                }
            } }
        }
        h2 { "Add an account" }
        form.card method="post" action="/users" {
            label { "Username" input name="username" required; }
            label { "Role" select name="role" { @for r in Role::ALL { option value=(r.as_str()) { (r) } } } }
            label { "E-mail (verified; for single sign-on)" input name="email" type="email"; }
            p { "A one-time password is shown once after adding." }
            button type="submit" { "Add" }
        }
    };
    html_response(StatusCode::OK, layout("Users", Some(&c), body))
}

#[derive(Deserialize)]
struct NewUserForm {
    username: String,
    role: String,
    email: Option<String>,
}

fn role_of(name: &str) -> Option<api::RoleName> {
    serde_json::from_value(Value::String(name.to_owned())).ok()
}

async fn add_user_form(
    State(s): State<AppState>,
    ip: ClientIp,
    Extension(c): Extension<Caller>,
    form: Result<Form<NewUserForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return error_page(StatusCode::BAD_REQUEST, Some(&c), "The form is incomplete.");
    };
    let Some(role) = role_of(&f.role) else {
        return error_page(StatusCode::BAD_REQUEST, Some(&c), "Unknown role.");
    };
    let body = api::NewUserBody {
        username: f.username,
        role,
        email: f.email.filter(|e| !e.trim().is_empty()),
        password: None,
    };
    match api::add_user(State(s), ip, Extension(c.clone()), ApiJson(body)).await {
        Ok((_, Json(added))) => {
            let page = layout(
                "Account added",
                Some(&c),
                html! {
                    p { "Account " strong { (added.user.username) } " (" (format!("{:?}", added.user.role).to_lowercase()) ") was added." }
                    @if let Some(pw) = &added.one_time_password {
                        p { "Its one-time password, shown only now: " code.secret { (pw) } }
                    }
                    p { a href="/users" { "Back to users" } }
                },
            );
            let mut r = html_response(StatusCode::CREATED, page);
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => api_error_page(e, &c),
    }
}

#[derive(Deserialize)]
struct ChangeForm {
    role: Option<String>,
    disabled: Option<String>,
}

async fn change_user_form(
    State(s): State<AppState>,
    ip: ClientIp,
    Extension(c): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    form: Result<Form<ChangeForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return error_page(StatusCode::BAD_REQUEST, Some(&c), "The form is incomplete.");
    };
    let role = match f.role.as_deref().map(role_of) {
        Some(None) => return error_page(StatusCode::BAD_REQUEST, Some(&c), "Unknown role."),
        Some(r) => r,
        None => None,
    };
    let disabled = match f.disabled.as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                Some(&c),
                "disabled is true or false.",
            );
        }
    };
    let change = api::UserChange { role, disabled };
    match api::change_user(
        State(s),
        ip,
        Extension(c.clone()),
        ApiPath(id),
        ApiJson(change),
    )
    .await
    {
        Ok(_) => Redirect::to("/users").into_response(),
        Err(e) => api_error_page(e, &c),
    }
}

async fn audit(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    q: Result<ApiQuery<api::AuditQuery>, ApiError>,
) -> Response {
    let q = match q {
        Ok(ApiQuery(q)) => q,
        Err(e) => return api_error_page(e, &c),
    };
    let rows = match api::audit_log(State(s), ApiQuery(q)).await {
        Ok(Json(r)) => r,
        Err(e) => return api_error_page(e, &c),
    };
    let body = html! {
        table.data {
            thead { tr { th { "When (UTC)" } th { "Who" } th { "Action" } th { "Target" } th { "From" } th { "Detail" } } }
            tbody { @for r in &rows {
                tr {
                    td { (when(r.at)) } td { (r.actor) } td { (r.action) }
                    td { (r.target.as_deref().unwrap_or("")) } td { (r.ip.as_deref().unwrap_or("")) }
                    td { code { (r.detail.to_string()) } }
                }
            } }
        }
        @if let Some(last) = rows.last() {
            @if rows.len() >= 50 { a href=(format!("/audit?before={}", last.id)) { "older →" } }
        }
    };
    html_response(StatusCode::OK, layout("Audit log", Some(&c), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_redirect_targets() {
        assert_eq!(when(0), "1970-01-01 00:00:00");
        assert_eq!(when(1_796_342_400), "2026-12-04 00:00:00");
        assert_eq!(when(951_782_400 + 3661), "2000-02-29 01:01:01");
        assert_eq!(safe_next(Some("/models?x=1")), "/models?x=1");
        for bad in ["//evil.test", "https://evil.test", "/\\evil", "models"] {
            assert_eq!(safe_next(Some(bad)), "/experiments", "{bad}");
        }
        assert_eq!(encode_component("/a b?c=d&e"), "/a%20b%3Fc%3Dd%26e");
    }

    #[test]
    fn page_markup_escapes_what_it_shows() {
        let c = Caller {
            id: 1,
            username: "<script>alert(1)</script>".into(),
            role: Role::Admin,
            family: "f".into(),
        };
        let m = layout("t<i>", Some(&c), html! { p { "\"quoted\"" } }).into_string();
        assert!(!m.contains("<script>alert"), "{m}");
        assert!(m.contains("&lt;script&gt;"), "{m}");
        assert!(!m.contains("<i>"));
    }
}
