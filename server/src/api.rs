//! The handlers of `/api/v1`, each with its OpenAPI description. Which role may call which is in
//! the route table ([`crate::routes`]), not here: a handler runs only after its route's gate.

use std::str::FromStr;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use dexlab_store::{ModelRow, NewAudit, RefreshUse, RiskCommand, Role, SessionRow, UserRow};
use dexlab_types::{ExperimentStatus, SessionStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Caller, dummy_hash, new_family, token_hash};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::{AppState, ClientIp, now};

/// The longest password accepted (argon2 hashes any length; this bounds the work per request).
const MAX_PASSWORD_CHARS: usize = 1024;
/// Page sizes of the list endpoints.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

/// A role, as the API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    Viewer,
    Researcher,
    Operator,
    Admin,
}

impl From<Role> for RoleName {
    fn from(r: Role) -> Self {
        match r {
            Role::Viewer => RoleName::Viewer,
            Role::Researcher => RoleName::Researcher,
            Role::Operator => RoleName::Operator,
            Role::Admin => RoleName::Admin,
        }
    }
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Self {
        match r {
            RoleName::Viewer => Role::Viewer,
            RoleName::Researcher => Role::Researcher,
            RoleName::Operator => Role::Operator,
            RoleName::Admin => Role::Admin,
        }
    }
}

/// An account, without its password hash.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserView {
    pub id: i64,
    pub username: String,
    pub role: RoleName,
    pub email: Option<String>,
    pub disabled: bool,
    /// Whether the account has a password (else it logs in through OIDC only).
    pub has_password: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<&UserRow> for UserView {
    fn from(u: &UserRow) -> Self {
        UserView {
            id: u.id,
            username: u.username.clone(),
            role: u.role.into(),
            email: u.email.clone(),
            disabled: u.disabled,
            has_password: u.password_hash.is_some(),
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication

/// A login with a username and password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(min_length = 1, max_length = 64)]
    pub username: String,
    #[schema(min_length = 1, max_length = 1024, format = Password)]
    pub password: String,
}

/// A new pair of tokens.
#[derive(Clone, Serialize, ToSchema)]
pub struct TokenResponse {
    /// A JWT for `Authorization: Bearer …`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds the access token is valid for.
    pub expires_in: i64,
    /// Exchange it once at `/api/v1/auth/refresh` for the next pair.
    pub refresh_token: String,
    pub refresh_expires_in: i64,
    pub user: UserView,
}

/// A refresh token to exchange.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[schema(min_length = 1, max_length = 256)]
    pub refresh_token: String,
}

pub(crate) fn audit(
    action: &str,
    actor: Option<&Caller>,
    target: Option<String>,
    detail: Value,
    ip: &ClientIp,
) -> NewAudit {
    NewAudit {
        at: now(),
        actor_id: actor.map(|c| c.id),
        actor: actor.map_or_else(|| "anonymous".to_owned(), |c| c.username.clone()),
        action: action.to_owned(),
        target,
        detail,
        ip: ip.text(),
    }
}

/// Issues a login family's next pair of tokens for `user`.
pub(crate) async fn issue(
    s: &AppState,
    user: &UserRow,
    family: &str,
) -> Result<TokenResponse, ApiError> {
    let at = now();
    let (access_token, _) = s.tokens.access(user, family, at);
    let (refresh_token, row) = s.tokens.refresh(user.id, family, at);
    s.store.add_refresh_token(&row).await?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: s.tokens.config().access_ttl_secs,
        refresh_token,
        refresh_expires_in: s.tokens.config().refresh_ttl_secs,
        user: user.into(),
    })
}

/// Log in with a username and password.
///
/// Failed logins back off exponentially per username and per client address after a few
/// failures (429 with `Retry-After`); an unknown user, a wrong password and a disabled account
/// get the same answer.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 429, body = ApiError),
    ))]
pub async fn login(
    State(s): State<AppState>,
    ip: ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    password_login(&s, &ip, &req.username, req.password)
        .await
        .map(Json)
}

/// Checks a username and password (with back-off and rate limits) and starts a login.
pub async fn password_login(
    s: &AppState,
    ip: &ClientIp,
    username: &str,
    password: String,
) -> Result<TokenResponse, ApiError> {
    let req = LoginRequest {
        username: username.to_owned(),
        password,
    };
    let username = req.username.trim().to_owned();
    if username.is_empty() || username.chars().count() > dexlab_store::MAX_USERNAME_CHARS {
        return Err(ApiError::bad_request(
            "username must have 1 to 64 characters",
        ));
    }
    if req.password.is_empty() || req.password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(ApiError::bad_request(
            "password must have 1 to 1024 characters",
        ));
    }
    let t = Instant::now();
    let ip_key = format!("ip:{}", ip.key());
    let user_key = format!("user:{}", username.to_lowercase());
    for key in [&ip_key, &user_key] {
        if let Err(wait) = s.limits.login_backoff.check(key, t) {
            s.metrics.rate_limited.inc();
            return Err(ApiError::rate_limited(wait));
        }
    }
    if let Err(wait) = s.limits.login_ip.take(&ip_key, t) {
        s.metrics.rate_limited.inc();
        return Err(ApiError::rate_limited(wait));
    }
    let user = s.store.user_by_name(&username).await?;
    let hash = user
        .as_ref()
        .and_then(|u| u.password_hash.clone())
        .unwrap_or_else(|| dummy_hash().to_owned());
    let password = req.password;
    let permit = s
        .hashes
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| ApiError::internal("password check", &e))?;
    let matches = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        dexlab_lab::accounts::verify_password(&hash, &password)
    })
    .await
    .map_err(|e| ApiError::internal("password check", &e))?;
    let ok_user = user.filter(|u| matches && !u.disabled && u.password_hash.is_some());
    let Some(user) = ok_user else {
        s.limits.login_backoff.failed(&ip_key, Instant::now());
        s.limits.login_backoff.failed(&user_key, Instant::now());
        s.metrics.login_failures.inc();
        let known = s.store.user_by_name(&username).await?;
        // The attempted name is recorded only when it is an account's: a password typed into
        // the username field must not land in the log.
        let (target, reason) = match &known {
            Some(u) if u.disabled => (Some(u.username.clone()), "disabled"),
            Some(u) => (Some(u.username.clone()), "wrong_password"),
            None => (None, "unknown_user"),
        };
        s.store
            .add_audit(&audit(
                "login_failed",
                None,
                target,
                json!({ "reason": reason }),
                ip,
            ))
            .await?;
        return Err(ApiError::unauthenticated(
            "invalid_credentials",
            "the username or password is wrong, or the account is disabled",
        ));
    };
    s.limits.login_backoff.succeeded(&user_key);
    s.limits.login_backoff.succeeded(&ip_key);
    start_login(s, ip, &user, json!({ "method": "password" })).await
}

/// A new login of `user` (whose credentials were checked): its first tokens, counted, and a
/// `login` audit record with `detail` (how it logged in).
pub(crate) async fn start_login(
    s: &AppState,
    ip: &ClientIp,
    user: &UserRow,
    detail: Value,
) -> Result<TokenResponse, ApiError> {
    let family = new_family();
    let tokens = issue(s, user, &family).await?;
    s.metrics.logins.inc();
    let caller = Caller {
        id: user.id,
        username: user.username.clone(),
        role: user.role,
        family,
    };
    s.store
        .add_audit(&audit(
            "login",
            Some(&caller),
            Some(user.username.clone()),
            detail,
            ip,
        ))
        .await?;
    Ok(tokens)
}

/// Exchange a refresh token for the next pair.
///
/// A refresh token is used once: presenting one a second time revokes its whole login (every
/// token of its family, access tokens included).
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 429, body = ApiError),
    ))]
pub async fn refresh(
    State(s): State<AppState>,
    ip: ClientIp,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    rotate(&s, &ip, &req.refresh_token).await.map(Json)
}

/// Exchanges a refresh token for its family's next pair (reuse revokes the family).
pub async fn rotate(
    s: &AppState,
    ip: &ClientIp,
    refresh_token: &str,
) -> Result<TokenResponse, ApiError> {
    let t = Instant::now();
    let ip_key = format!("ip:{}", ip.key());
    if let Err(wait) = s.limits.login_backoff.check(&ip_key, t) {
        s.metrics.rate_limited.inc();
        return Err(ApiError::rate_limited(wait));
    }
    let at = now();
    let refused = |code, message: &str| {
        s.limits.login_backoff.failed(&ip_key, Instant::now());
        ApiError::unauthenticated(code, message.to_owned())
    };
    let row = match s
        .store
        .use_refresh_token(&token_hash(refresh_token), at)
        .await?
    {
        RefreshUse::Valid(row) => row,
        RefreshUse::Unknown => return Err(refused("token_invalid", "unknown refresh token")),
        RefreshUse::Expired(_) => {
            return Err(refused("token_expired", "the refresh token has expired"));
        }
        RefreshUse::Revoked(_) => {
            return Err(refused("token_revoked", "the refresh token was revoked"));
        }
        RefreshUse::Reused(row) => {
            s.metrics.refresh_reuses.inc();
            let user = s.store.user_by_id(row.user_id).await?;
            s.store
                .add_audit(&NewAudit {
                    actor_id: Some(row.user_id),
                    actor: user.map_or_else(|| format!("user {}", row.user_id), |u| u.username),
                    ..audit(
                        "refresh_reused",
                        None,
                        None,
                        json!({ "family_revoked": true }),
                        ip,
                    )
                })
                .await?;
            return Err(refused(
                "token_reused",
                "the refresh token was used before; its login is now revoked, log in again",
            ));
        }
    };
    let user = s
        .store
        .user_by_id(row.user_id)
        .await?
        .filter(|u| !u.disabled);
    let Some(user) = user else {
        s.store.revoke_family(&row.family, "disabled", at).await?;
        return Err(refused("account_disabled", "the account is disabled"));
    };
    let tokens = issue(s, &user, &row.family).await?;
    s.metrics.refreshes.inc();
    Ok(tokens)
}

/// End this login: its refresh tokens and access tokens stop working.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ApiError)))]
pub async fn logout(
    State(s): State<AppState>,
    ip: ClientIp,
    Extension(c): Extension<Caller>,
) -> Result<StatusCode, ApiError> {
    s.store.revoke_family(&c.family, "logout", now()).await?;
    s.store
        .add_audit(&audit("logout", Some(&c), None, json!({}), &ip))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The account behind the token.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = ApiError)))]
pub async fn me(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
) -> Result<Json<UserView>, ApiError> {
    let user = s
        .store
        .user_by_id(c.id)
        .await?
        .ok_or_else(|| ApiError::not_found("the account is gone"))?;
    Ok(Json((&user).into()))
}

// ---------------------------------------------------------------------------------------------
// Experiments

/// The order of a list.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    Asc,
    #[default]
    Desc,
}

/// What experiments are sorted by.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentSort {
    #[default]
    CreatedAt,
    Name,
    Id,
    /// The tuned strategy's out-of-sample net PnL (experiments without one last).
    OosPnl,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExperimentQuery {
    /// `running`, `done`, `failed` or `interrupted`.
    pub status: Option<String>,
    /// The strategy's name, exactly.
    pub strategy: Option<String>,
    /// A part of the name or of the dataset, any case.
    #[param(max_length = 200)]
    pub q: Option<String>,
    #[param(inline)]
    pub sort: Option<ExperimentSort>,
    #[param(inline)]
    pub order: Option<Order>,
    /// 1 to 500 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    #[param(value_type = Option<u32>, minimum = 0)]
    pub offset: Option<String>,
}

/// An experiment in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExperimentSummary {
    pub id: i64,
    pub name: String,
    pub strategy: String,
    pub dataset: String,
    /// `running`, `done`, `failed` or `interrupted`.
    pub status: String,
    pub seed: u64,
    pub created_at: i64,
    /// The GA-tuned strategy's out-of-sample net PnL over all folds, in quote units.
    pub oos_net_pnl_quote: Option<f64>,
    /// The same of not trading, the baseline every result is read against.
    pub oos_net_pnl_quote_no_trade: Option<f64>,
    /// Why it failed or stopped.
    pub error: Option<String>,
}

impl From<&dexlab_store::ExperimentListRow> for ExperimentSummary {
    fn from(e: &dexlab_store::ExperimentListRow) -> Self {
        ExperimentSummary {
            id: e.id,
            name: e.name.clone(),
            strategy: e.strategy.clone(),
            dataset: e.dataset.clone(),
            status: e.status.as_str().to_owned(),
            seed: e.seed,
            created_at: e.created_at,
            oos_net_pnl_quote: e.oos_net_pnl_quote,
            oos_net_pnl_quote_no_trade: e.oos_net_pnl_quote_no_trade,
            error: e.error.clone(),
        }
    }
}

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExperimentPage {
    pub items: Vec<ExperimentSummary>,
    /// Matching experiments in all pages.
    pub total: usize,
    pub limit: u32,
    pub offset: u32,
}

/// A whole-number query parameter, with an error naming it and the value given.
pub(crate) fn int_param<T: FromStr>(
    name: &str,
    value: Option<&str>,
) -> Result<Option<T>, ApiError> {
    value
        .map(|v| {
            v.parse().map_err(|_| {
                ApiError::bad_request(format!("{name} must be a whole number, got {v:?}"))
            })
        })
        .transpose()
}

pub(crate) fn page_limit(limit: Option<&str>) -> Result<u32, ApiError> {
    match int_param("limit", limit)?.unwrap_or(DEFAULT_LIMIT) {
        l @ 1..=MAX_LIMIT => Ok(l),
        l => Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_LIMIT}, got {l}"
        ))),
    }
}

/// Experiments: filter, sort, paginate.
#[utoipa::path(get, path = "/api/v1/experiments", tag = "experiments", params(ExperimentQuery),
    security(("bearer" = [])),
    responses((status = 200, body = ExperimentPage), (status = 400, body = ApiError)))]
pub async fn list_experiments(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<ExperimentQuery>,
) -> Result<Json<ExperimentPage>, ApiError> {
    let limit = page_limit(q.limit.as_deref())?;
    let offset: u32 = int_param("offset", q.offset.as_deref())?.unwrap_or(0);
    let status = q
        .status
        .as_deref()
        .map(ExperimentStatus::from_str)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let needle = q.q.as_deref().map(str::to_lowercase);
    if needle.as_ref().is_some_and(|n| n.chars().count() > 200) {
        return Err(ApiError::bad_request("q is longer than 200 characters"));
    }
    let filter = dexlab_store::ExperimentFilter {
        status,
        strategy: q.strategy.clone(),
        text: needle,
    };
    let order = match q.sort.unwrap_or_default() {
        ExperimentSort::CreatedAt => dexlab_store::ExperimentOrder::CreatedAt,
        ExperimentSort::Name => dexlab_store::ExperimentOrder::Name,
        ExperimentSort::Id => dexlab_store::ExperimentOrder::Id,
        ExperimentSort::OosPnl => dexlab_store::ExperimentOrder::OosPnl,
    };
    let descending = matches!(q.order.unwrap_or_default(), Order::Desc);
    let (rows, total) = s
        .store
        .experiment_page(&filter, order, descending, limit, offset)
        .await?;
    let total = usize::try_from(total).unwrap_or(usize::MAX);
    let items = rows.iter().map(ExperimentSummary::from).collect();
    Ok(Json(ExperimentPage {
        items,
        total,
        limit,
        offset,
    }))
}

/// One experiment with everything stored about it: config, folds, runs, fitness per
/// generation, metrics of every run and baseline in and out of sample, equity curves.
#[utoipa::path(get, path = "/api/v1/experiments/{experiment}", tag = "experiments",
    params(("experiment" = String, Path, description = "id or name")),
    security(("bearer" = [])),
    responses((status = 200, body = Object), (status = 404, body = ApiError)))]
pub async fn experiment(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let e = s
        .store
        .find_experiment(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no experiment {name:?}")))?;
    let detail = s.store.experiment_detail(e.id).await?;
    serde_json::to_value(detail)
        .map(Json)
        .map_err(|e| ApiError::internal("experiment detail", &e))
}

// ---------------------------------------------------------------------------------------------
// Models

/// A registered model in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelSummary {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub task: String,
    pub target: String,
    pub window: u32,
    pub seed: u64,
    pub backend: String,
    pub created_at: i64,
    /// Test-split metrics of the model and of each baseline.
    #[schema(value_type = Object)]
    pub metrics: Value,
    pub retired: bool,
}

impl From<&ModelRow> for ModelSummary {
    fn from(m: &ModelRow) -> Self {
        let text = |v: &dyn erased_text::Text| v.text();
        ModelSummary {
            id: m.id,
            name: m.model.name.clone(),
            kind: text(&m.model.kind),
            task: text(&m.model.task),
            target: m.model.target.clone(),
            window: m.model.window,
            seed: m.model.seed,
            backend: m.model.backend.clone(),
            created_at: m.model.created_at,
            metrics: m.model.metrics.clone(),
            retired: m.retired.is_some(),
        }
    }
}

/// Names of the registry's text enums, through their serde spelling.
mod erased_text {
    pub trait Text {
        fn text(&self) -> String;
    }
    impl<T: serde::Serialize> Text for T {
        fn text(&self) -> String {
            match serde_json::to_value(self) {
                Ok(serde_json::Value::String(s)) => s,
                Ok(other) => other.to_string(),
                Err(_) => String::new(),
            }
        }
    }
}

/// Registered models, newest first.
#[utoipa::path(get, path = "/api/v1/models", tag = "models", security(("bearer" = [])),
    responses((status = 200, body = [ModelSummary])))]
pub async fn list_models(State(s): State<AppState>) -> Result<Json<Vec<ModelSummary>>, ApiError> {
    let mut models = s.store.list_models().await?;
    models.sort_by_key(|m| std::cmp::Reverse(m.id));
    Ok(Json(models.iter().map(ModelSummary::from).collect()))
}

/// One model: its config, the blocks of each split it was trained on, training, metrics
/// against baselines, retirement.
#[utoipa::path(get, path = "/api/v1/models/{model}", tag = "models",
    params(("model" = String, Path, description = "name or id")),
    security(("bearer" = [])),
    responses((status = 200, body = Object), (status = 404, body = ApiError)))]
pub async fn model(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let m = s
        .store
        .model_by_name_or_id(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no model {name:?}")))?;
    serde_json::to_value(m)
        .map(Json)
        .map_err(|e| ApiError::internal("model", &e))
}

// ---------------------------------------------------------------------------------------------
// Deployments

/// The current version of every deployment.
#[utoipa::path(get, path = "/api/v1/deployments", tag = "deployments", security(("bearer" = [])),
    responses((status = 200, body = [Object])))]
pub async fn list_deployments(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let rows = s.store.list_deployments().await?;
    serde_json::to_value(rows)
        .map(Json)
        .map_err(|e| ApiError::internal("deployments", &e))
}

/// Every version of one deployment, oldest first.
#[utoipa::path(get, path = "/api/v1/deployments/{deployment}", tag = "deployments",
    params(("deployment" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = [Object]), (status = 404, body = ApiError)))]
pub async fn deployment(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let rows = s.store.deployment_versions(&name).await?;
    if rows.is_empty() {
        return Err(ApiError::not_found(format!("no deployment {name:?}")));
    }
    serde_json::to_value(rows)
        .map(Json)
        .map_err(|e| ApiError::internal("deployment", &e))
}

/// A promotion of an experiment's tuned parameters (and model) to a deployment.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteBody {
    /// The experiment, by id or name.
    pub experiment: String,
    /// The deployment's name; promoting to an existing name adds a version.
    pub name: String,
    /// The fold whose parameters to deploy (default: the last).
    pub fold: Option<u32>,
    /// The model, by name or id (default: the experiment's own).
    pub model: Option<String>,
    /// The risk limits (the keys of `examples/risk.toml`; missing keys take their defaults).
    #[schema(value_type = Object)]
    pub risk: Value,
    /// Promote although the out-of-sample result does not beat not trading (recorded).
    #[serde(default)]
    pub force: bool,
    #[schema(max_length = 1000)]
    pub note: Option<String>,
}

/// Promote an experiment (operator).
#[utoipa::path(post, path = "/api/v1/deployments", tag = "deployments", request_body = PromoteBody,
    security(("bearer" = [])),
    responses((status = 201, body = Object), (status = 400, body = ApiError),
        (status = 404, body = ApiError), (status = 409, body = ApiError),
        (status = 422, body = ApiError)))]
pub async fn promote(
    State(s): State<AppState>,
    ip: ClientIp,
    Extension(c): Extension<Caller>,
    ApiJson(b): ApiJson<PromoteBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let risk: dexlab_engine::risk::RiskLimits =
        serde_json::from_value(b.risk).map_err(|e| ApiError::bad_request(format!("risk: {e}")))?;
    risk.validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if b.note.as_ref().is_some_and(|n| n.chars().count() > 1000) {
        return Err(ApiError::bad_request("note is longer than 1000 characters"));
    }
    let req = dexlab_lab::promote::PromoteRequest {
        experiment: b.experiment,
        fold: b.fold,
        model: b.model,
        risk,
        name: b.name,
        force: b.force,
        by: c.username.clone(),
        note: b.note,
        at: now(),
        git_commit: s.config.git_commit.clone(),
    };
    let row = dexlab_lab::promote::promote(&s.store, &req).await?;
    let target = format!("{}@v{}", row.deployment.name, row.version);
    s.store
        .add_audit(&audit(
            "promote",
            Some(&c),
            Some(target),
            json!({
                "experiment": row.deployment.experiment_name,
                "fold": row.deployment.fold,
                "model": row.deployment.model_name,
                "forced": row.deployment.forced,
            }),
            &ip,
        ))
        .await?;
    let body = serde_json::to_value(row).map_err(|e| ApiError::internal("promote", &e))?;
    Ok((StatusCode::CREATED, Json(body)))
}

/// Why an operator acts.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    #[schema(max_length = 1000)]
    pub reason: Option<String>,
}

fn reason_of(r: Option<String>) -> Result<Option<String>, ApiError> {
    match r {
        Some(t) if t.chars().count() > 1000 => Err(ApiError::bad_request(
            "reason is longer than 1000 characters",
        )),
        other => Ok(other.filter(|t| !t.trim().is_empty())),
    }
}

/// Roll a deployment back to the version its current one replaced (operator).
#[utoipa::path(post, path = "/api/v1/deployments/{deployment}/rollback", tag = "deployments",
    params(("deployment" = String, Path)), request_body = ReasonBody,
    security(("bearer" = [])),
    responses((status = 201, body = Object), (status = 404, body = ApiError),
        (status = 409, body = ApiError)))]
pub async fn rollback(
    State(s): State<AppState>,
    ip: ClientIp,
    Extension(c): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    ApiJson(b): ApiJson<ReasonBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let reason = reason_of(b.reason)?;
    let row = s
        .store
        .rollback_deployment(&name, &c.username, now(), reason.as_deref())
        .await?;
    s.store
        .add_audit(&audit(
            "rollback",
            Some(&c),
            Some(format!("{}@v{}", row.deployment.name, row.version)),
            json!({ "restores": row.rollback_of, "reason": reason }),
            &ip,
        ))
        .await?;
    let body = serde_json::to_value(row).map_err(|e| ApiError::internal("rollback", &e))?;
    Ok((StatusCode::CREATED, Json(body)))
}

// ---------------------------------------------------------------------------------------------
// Sessions and the kill switch

/// A paper or live trading session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: i64,
    pub dir: String,
    /// `paper` or `live`.
    pub mode: String,
    pub chain_id: u64,
    pub strategy: String,
    /// `running`, `stopped` or `failed`.
    pub status: String,
    pub blocks: u64,
    pub last_block: Option<u64>,
    pub bundles: u64,
    pub fills: u64,
    pub node_mismatches: u64,
    pub updated_at: i64,
    pub created_at: i64,
    pub error: Option<String>,
}

impl From<&SessionRow> for SessionView {
    fn from(r: &SessionRow) -> Self {
        SessionView {
            id: r.id,
            dir: r.dir.clone(),
            mode: r.mode.as_str().to_owned(),
            chain_id: r.chain_id,
            strategy: r.strategy.clone(),
            status: r.status.as_str().to_owned(),
            blocks: r.progress.blocks,
            last_block: r.progress.last_block,
            bundles: r.progress.bundles,
            fills: r.progress.fills,
            node_mismatches: r.progress.node_mismatches,
            updated_at: r.progress.updated_at,
            created_at: r.created_at,
            error: r.error.clone(),
        }
    }
}

/// Trading sessions, newest first.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "live", security(("bearer" = [])),
    responses((status = 200, body = [SessionView])))]
pub async fn list_sessions(State(s): State<AppState>) -> Result<Json<Vec<SessionView>>, ApiError> {
    let mut rows = s.store.list_sessions().await?;
    rows.sort_by_key(|r| std::cmp::Reverse(r.id));
    Ok(Json(rows.iter().map(SessionView::from).collect()))
}

async fn session_row(s: &AppState, id: i64) -> Result<SessionRow, ApiError> {
    s.store
        .find_session(&id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no session {id}")))
}

/// One session and its operators' commands.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionDetail {
    pub session: SessionView,
    /// The kill switch's history: every command, oldest first.
    #[schema(value_type = [Object])]
    pub commands: Value,
}

/// One session and its kill-switch history.
#[utoipa::path(get, path = "/api/v1/sessions/{id}", tag = "live",
    params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = SessionDetail), (status = 400, body = ApiError),
        (status = 404, body = ApiError)))]
pub async fn session(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<SessionDetail>, ApiError> {
    let row = session_row(&s, id).await?;
    let commands = serde_json::to_value(s.store.risk_commands(row.id).await?)
        .map_err(|e| ApiError::internal("session", &e))?;
    Ok(Json(SessionDetail {
        session: (&row).into(),
        commands,
    }))
}

/// A command queued for a session.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandQueued {
    pub command_id: i64,
    pub session_id: i64,
    /// Whether the session is running (else the command binds when it is resumed).
    pub session_running: bool,
}

/// Press the kill switch of a session: it sends no new bundle from its next block on (operator).
#[utoipa::path(post, path = "/api/v1/sessions/{id}/kill", tag = "live",
    params(("id" = i64, Path)), request_body = ReasonBody, security(("bearer" = [])),
    responses((status = 202, body = CommandQueued), (status = 404, body = ApiError)))]
pub async fn kill(
    State(s): State<AppState>,
    ip: ClientIp,
    Extension(c): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<ReasonBody>,
) -> Result<(StatusCode, Json<CommandQueued>), ApiError> {
    let reason = reason_of(b.reason)?.unwrap_or_else(|| "kill switch (dashboard)".to_owned());
    command(&s, &ip, &c, id, RiskCommand::Kill, reason, "kill_switch").await
}

/// Which halt to clear.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearBody {
    /// `kill_switch`, `reverts`, `daily_loss` or `reconciliation`.
    #[schema(pattern = "^(kill_switch|reverts|daily_loss|reconciliation)$")]
    pub halt: String,
    #[schema(max_length = 1000)]
    pub reason: Option<String>,
}

/// Clear a halt of a session (operator).
#[utoipa::path(post, path = "/api/v1/sessions/{id}/clear", tag = "live",
    params(("id" = i64, Path)), request_body = ClearBody, security(("bearer" = [])),
    responses((status = 202, body = CommandQueued), (status = 400, body = ApiError),
        (status = 404, body = ApiError)))]
pub async fn clear(
    State(s): State<AppState>,
    ip: ClientIp,
    Extension(c): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<ClearBody>,
) -> Result<(StatusCode, Json<CommandQueued>), ApiError> {
    if !dexlab_store::TRIPS.contains(&b.halt.as_str()) {
        return Err(ApiError::bad_request(format!(
            "halt must be one of {}, got {:?}",
            dexlab_store::TRIPS.join(", "),
            b.halt
        )));
    }
    let reason = reason_of(b.reason)?.unwrap_or_else(|| "cleared (dashboard)".to_owned());
    command(
        &s,
        &ip,
        &c,
        id,
        RiskCommand::Clear { trip: b.halt },
        reason,
        "halt_cleared",
    )
    .await
}

async fn command(
    s: &AppState,
    ip: &ClientIp,
    c: &Caller,
    id: i64,
    cmd: RiskCommand,
    reason: String,
    action: &str,
) -> Result<(StatusCode, Json<CommandQueued>), ApiError> {
    let row = session_row(s, id).await?;
    let detail = json!({ "command": &cmd, "reason": &reason });
    let command_id = s
        .store
        .add_risk_command(row.id, &cmd, &reason, &c.username, now())
        .await?;
    s.store
        .add_audit(&audit(
            action,
            Some(c),
            Some(format!("session {}", row.id)),
            detail,
            ip,
        ))
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(CommandQueued {
            command_id,
            session_id: row.id,
            session_running: row.status == SessionStatus::Running,
        }),
    ))
}

// ---------------------------------------------------------------------------------------------
// Accounts (admin)

/// Every account.
#[utoipa::path(get, path = "/api/v1/users", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = [UserView])))]
pub async fn list_users(State(s): State<AppState>) -> Result<Json<Vec<UserView>>, ApiError> {
    let users = s.store.list_users().await?;
    Ok(Json(users.iter().map(UserView::from).collect()))
}

/// An account to add.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    #[schema(min_length = 1, max_length = 64)]
    pub username: String,
    pub role: RoleName,
    /// A verified address: OIDC logins with it reach this account.
    #[schema(max_length = 254)]
    pub email: Option<String>,
    /// At least 12 characters; without one, a one-time password is made and returned once.
    #[schema(min_length = 12, max_length = 1024, format = Password)]
    pub password: Option<String>,
}

/// The account added.
#[derive(Serialize, ToSchema)]
pub struct UserAdded {
    pub user: UserView,
    /// The generated password, shown this once (absent when one was given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub one_time_password: Option<String>,
}

/// Lowercased and trimmed: one spelling per address.
pub fn normalize_email(e: &str) -> String {
    e.trim().to_lowercase()
}

/// Add an account (admin).
#[utoipa::path(post, path = "/api/v1/users", tag = "admin", request_body = NewUserBody,
    security(("bearer" = [])),
    responses((status = 201, body = UserAdded), (status = 400, body = ApiError),
        (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub async fn add_user(
    State(s): State<AppState>,
    ip: ClientIp,
    Extension(c): Extension<Caller>,
    ApiJson(b): ApiJson<NewUserBody>,
) -> Result<(StatusCode, Json<UserAdded>), ApiError> {
    if b.password
        .as_ref()
        .is_some_and(|p| p.chars().count() > MAX_PASSWORD_CHARS)
    {
        return Err(ApiError::bad_request(
            "password must have at most 1024 characters",
        ));
    }
    let add = dexlab_lab::accounts::AddUser {
        username: b.username,
        role: b.role.into(),
        email: b.email.as_deref().map(normalize_email),
        password: b.password,
        by: c.username.clone(),
        at: now(),
    };
    let permit = s
        .hashes
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| ApiError::internal("add user", &e))?;
    let (row, one_time_password) = dexlab_lab::accounts::add_user(&s.store, &add).await?;
    drop(permit);
    // add_user records `user_added` with the CLI's actor; the API's adds who and from where.
    s.store
        .add_audit(&audit(
            "user_added_api",
            Some(&c),
            Some(row.username.clone()),
            json!({ "user_id": row.id, "role": row.role.as_str() }),
            &ip,
        ))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(UserAdded {
            user: (&row).into(),
            one_time_password,
        }),
    ))
}

/// Changes to an account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    pub role: Option<RoleName>,
    /// Disabling ends every login of the account at once.
    pub disabled: Option<bool>,
}

/// Change an account's role or disable it (admin). An admin cannot demote or disable itself.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "admin",
    params(("id" = i64, Path)), request_body = UserChange, security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 400, body = ApiError),
        (status = 404, body = ApiError), (status = 409, body = ApiError)))]
pub async fn change_user(
    State(s): State<AppState>,
    ip: ClientIp,
    Extension(c): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<UserChange>,
) -> Result<Json<UserView>, ApiError> {
    if b.role.is_none() && b.disabled.is_none() {
        return Err(ApiError::bad_request(
            "nothing to change: give role or disabled",
        ));
    }
    let mut user = s
        .store
        .user_by_id(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user {id}")))?;
    if id == c.id
        && (b.disabled == Some(true) || b.role.is_some_and(|r| Role::from(r) != Role::Admin))
    {
        return Err(ApiError::conflict(
            "an admin cannot demote or disable its own account; another admin can",
        ));
    }
    let at = now();
    if let Some(role) = b.role.map(Role::from).filter(|r| *r != user.role) {
        let before = user.role;
        user = s.store.set_role(id, role, at).await?;
        s.metrics.role_changes.inc();
        s.store
            .add_audit(&audit(
                "role_changed",
                Some(&c),
                Some(user.username.clone()),
                json!({ "from": before.as_str(), "to": role.as_str() }),
                &ip,
            ))
            .await?;
    }
    if let Some(disabled) = b.disabled.filter(|d| *d != user.disabled) {
        user = s.store.set_disabled(id, disabled, at).await?;
        let revoked = if disabled {
            s.store.revoke_user_tokens(id, "disabled", at).await?
        } else {
            0
        };
        s.store
            .add_audit(&audit(
                if disabled {
                    "user_disabled"
                } else {
                    "user_enabled"
                },
                Some(&c),
                Some(user.username.clone()),
                json!({ "tokens_revoked": revoked }),
                &ip,
            ))
            .await?;
    }
    Ok(Json((&user).into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// 1 to 500 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// Only records older than this id (the last id of the previous page).
    #[param(value_type = Option<i64>)]
    pub before: Option<String>,
}

/// One audit record.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub id: i64,
    pub at: i64,
    pub actor_id: Option<i64>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    #[schema(value_type = Object)]
    pub detail: Value,
    pub ip: Option<String>,
}

/// The audit log, newest first (admin).
#[utoipa::path(get, path = "/api/v1/audit", tag = "admin", params(AuditQuery),
    security(("bearer" = [])),
    responses((status = 200, body = [AuditView]), (status = 400, body = ApiError)))]
pub async fn audit_log(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<AuditView>>, ApiError> {
    let limit = page_limit(q.limit.as_deref())?;
    let before = int_param("before", q.before.as_deref())?;
    let rows = s.store.audit_log(limit, before).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| AuditView {
                id: r.id,
                at: r.at,
                actor_id: r.actor_id,
                actor: r.actor,
                action: r.action,
                target: r.target,
                detail: r.detail,
                ip: r.ip,
            })
            .collect(),
    ))
}
