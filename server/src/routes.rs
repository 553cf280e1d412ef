//! The route table: every route with the least role that may call it. The router, the gate in
//! front of each route and the tests' authorization matrix are all made from this one table, so
//! that a route cannot be added without saying who may call it, and the OpenAPI description is
//! checked against it (a test fails when a route is missing from either).

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, patch, post};
use dexlab_store::Role;
use sha2::{Digest, Sha256};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::auth::{Caller, bearer};
use crate::error::ApiError;
use crate::{AppState, ClientIp, api, api_jobs};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, login, refresh, the API description).
    Public,
    /// An account of this role or a higher one.
    Role(Role),
    /// A viewer's access token, or the metrics token the server was given (for Prometheus,
    /// whose scrapes cannot log in).
    Metrics,
}

/// What a route answers: the API (JSON, bearer tokens) or a page (HTML, cookies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Api,
    Page,
}

/// One route.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub kind: Kind,
    pub handler: MethodRouter<AppState>,
}

impl Route {
    pub fn new(
        kind: Kind,
        method: Method,
        path: &'static str,
        access: Access,
        handler: MethodRouter<AppState>,
    ) -> Route {
        Route {
            method,
            path,
            access,
            kind,
            handler,
        }
    }
}

fn route(
    method: Method,
    path: &'static str,
    access: Access,
    handler: MethodRouter<AppState>,
) -> Route {
    Route::new(Kind::Api, method, path, access, handler)
}

/// Every route of the server but the API description and Swagger UI (public, read-only).
pub fn table() -> Vec<Route> {
    use Access::{Metrics, Public, Role as R};
    use Role::{Admin, Operator, Researcher, Viewer};
    vec![
        route(Method::GET, "/healthz", Public, get(crate::healthz)),
        route(Method::GET, "/readyz", Public, get(crate::readyz)),
        route(Method::GET, "/metrics", Metrics, get(crate::metrics)),
        route(Method::POST, "/api/v1/auth/login", Public, post(api::login)),
        route(
            Method::POST,
            "/api/v1/auth/refresh",
            Public,
            post(api::refresh),
        ),
        route(
            Method::POST,
            "/api/v1/auth/logout",
            R(Viewer),
            post(api::logout),
        ),
        route(Method::GET, "/api/v1/auth/me", R(Viewer), get(api::me)),
        route(
            Method::GET,
            "/api/v1/experiments",
            R(Viewer),
            get(api::list_experiments),
        ),
        route(
            Method::GET,
            "/api/v1/experiments/{experiment}",
            R(Viewer),
            get(api::experiment),
        ),
        route(
            Method::GET,
            "/api/v1/models",
            R(Viewer),
            get(api::list_models),
        ),
        route(
            Method::GET,
            "/api/v1/models/{model}",
            R(Viewer),
            get(api::model),
        ),
        route(
            Method::GET,
            "/api/v1/deployments",
            R(Viewer),
            get(api::list_deployments),
        ),
        route(
            Method::POST,
            "/api/v1/deployments",
            R(Operator),
            post(api::promote),
        ),
        route(
            Method::GET,
            "/api/v1/deployments/{deployment}",
            R(Viewer),
            get(api::deployment),
        ),
        route(
            Method::POST,
            "/api/v1/deployments/{deployment}/rollback",
            R(Operator),
            post(api::rollback),
        ),
        route(
            Method::GET,
            "/api/v1/sessions",
            R(Viewer),
            get(api::list_sessions),
        ),
        route(
            Method::GET,
            "/api/v1/sessions/{id}",
            R(Viewer),
            get(api::session),
        ),
        route(
            Method::POST,
            "/api/v1/sessions/{id}/kill",
            R(Operator),
            post(api::kill),
        ),
        route(
            Method::POST,
            "/api/v1/sessions/{id}/clear",
            R(Operator),
            post(api::clear),
        ),
        route(Method::GET, "/api/v1/users", R(Admin), get(api::list_users)),
        route(Method::POST, "/api/v1/users", R(Admin), post(api::add_user)),
        route(
            Method::PATCH,
            "/api/v1/users/{id}",
            R(Admin),
            patch(api::change_user),
        ),
        route(Method::GET, "/api/v1/audit", R(Admin), get(api::audit_log)),
        route(
            Method::GET,
            "/api/v1/jobs",
            R(Researcher),
            get(api_jobs::list_jobs),
        ),
        route(
            Method::POST,
            "/api/v1/jobs",
            R(Researcher),
            post(api_jobs::launch),
        ),
        route(
            Method::GET,
            "/api/v1/jobs/{id}",
            R(Researcher),
            get(api_jobs::job),
        ),
        route(
            Method::POST,
            "/api/v1/jobs/{id}/cancel",
            R(Researcher),
            post(api_jobs::cancel),
        ),
        route(
            Method::GET,
            "/api/v1/datasets",
            R(Researcher),
            get(api_jobs::inputs),
        ),
    ]
    .into_iter()
    .chain(crate::pages::table())
    .collect()
}

/// The OpenAPI description of [`table`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "dexlab",
        description = "Experiments, models, deployments and trading sessions of a dexlab store. \
            Log in at /api/v1/auth/login and send the access token as `Authorization: Bearer`. \
            Roles: viewer reads; researcher launches work; operator promotes, rolls back and \
            uses the kill switch; admin manages accounts. Every error is \
            `{\"error\", \"message\"}`."
    ),
    paths(
        crate::healthz, crate::readyz, crate::metrics,
        api::login, api::refresh, api::logout, api::me,
        api::list_experiments, api::experiment,
        api::list_models, api::model,
        api::list_deployments, api::promote, api::deployment, api::rollback,
        api::list_sessions, api::session, api::kill, api::clear,
        api::list_users, api::add_user, api::change_user, api::audit_log,
        api_jobs::list_jobs, api_jobs::launch, api_jobs::job, api_jobs::cancel, api_jobs::inputs,
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "auth"), (name = "experiments"), (name = "models"), (name = "deployments"),
        (name = "live"), (name = "jobs"), (name = "admin"), (name = "ops"),
    )
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// What the gate of one route knows.
#[derive(Clone)]
pub struct Gate {
    pub state: AppState,
    pub access: Access,
}

/// The gate in front of a route: authenticates, rate-limits and authorizes, then hands the
/// [`Caller`] to the handler.
pub async fn gate(State(g): State<Gate>, mut req: Request, next: Next) -> Response {
    let min = match g.access {
        Access::Public => return next.run(req).await,
        Access::Metrics => {
            if metrics_token_matches(&g.state, &req) {
                return next.run(req).await;
            }
            Role::Viewer
        }
        Access::Role(r) => r,
    };
    // Owned before the await: a request body is not `Sync`, so no reference to the request may
    // live across one.
    let ip = ClientIp::of(req.extensions());
    let token = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .map(str::to_owned);
    match authorize_token(&g.state, &ip, token.as_deref(), min).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

fn metrics_token_matches(s: &AppState, req: &Request) -> bool {
    let Some(expected) = &s.config.metrics_token_hash else {
        return false;
    };
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    // Digests compared, so the comparison's time says nothing about the token.
    given.is_some_and(|t| Sha256::digest(t.as_bytes())[..] == expected[..])
}

/// Rate-limits the client, checks the access token and its account, and the role.
pub async fn authorize_token(
    s: &AppState,
    ip: &ClientIp,
    token: Option<&str>,
    min: Role,
) -> Result<Caller, ApiError> {
    let now = std::time::Instant::now();
    if let Err(wait) = s.limits.api_ip.take(&ip.key(), now) {
        s.metrics.rate_limited.inc();
        return Err(ApiError::rate_limited(wait));
    }
    let token = token.ok_or_else(|| {
        ApiError::unauthenticated(
            "unauthenticated",
            "this route needs `Authorization: Bearer <access token>`; log in at \
             POST /api/v1/auth/login",
        )
    })?;
    let claims = s.tokens.check(token)?;
    let invalid =
        || ApiError::unauthenticated("token_invalid", "the access token names no account");
    let id: i64 = claims.sub.parse().map_err(|_| invalid())?;
    let user = s.store.user_by_id(id).await?.ok_or_else(invalid)?;
    if user.disabled {
        return Err(ApiError::unauthenticated(
            "account_disabled",
            "the account is disabled",
        ));
    }
    if s.store.token_family_revoked(&claims.fam).await? {
        return Err(ApiError::unauthenticated(
            "token_revoked",
            "this login was ended (logout, a reused refresh token, or an admin); log in again",
        ));
    }
    if let Err(wait) = s.limits.api_user.take(&format!("user:{id}"), now) {
        s.metrics.rate_limited.inc();
        return Err(ApiError::rate_limited(wait));
    }
    if user.role < min {
        return Err(ApiError::forbidden(format!(
            "this needs the {min} role or higher; the account is a {}",
            user.role
        )));
    }
    Ok(Caller {
        id,
        username: user.username,
        role: user.role,
        family: claims.fam,
    })
}

/// The route table as a router: each route behind its gate.
pub fn router(state: &AppState) -> axum::Router<AppState> {
    let mut r = axum::Router::new();
    for route in table() {
        let gate_state = Gate {
            state: state.clone(),
            access: route.access,
        };
        let handler = match route.kind {
            Kind::Api => route
                .handler
                .route_layer(from_fn_with_state(gate_state, gate)),
            Kind::Page => route
                .handler
                .route_layer(from_fn_with_state(gate_state, crate::pages::gate)),
        };
        r = r.route(route.path, handler);
    }
    r
}
