//! dexlab-server: the dashboard and API server, an axum router over the store of `DATABASE_URL`.
//!
//! - **Routes** are one table ([`routes::table`]) naming the least role each needs; the gate in
//!   front of every route authenticates the bearer token, checks the account in the store
//!   (disabled, role, revoked login), rate-limits per client address and per account, and
//!   refuses with 401/403/429. Tests walk the whole table under every role and every kind of bad
//!   token.
//! - **Accounts** ([`auth`]): argon2id passwords, 15-minute HS256 access tokens, rotating refresh
//!   tokens with reuse detection, logout; login back-off per address and per username
//!   ([`limits`]).
//! - **The API** ([`api`]) under `/api/v1`, described by OpenAPI at `/api/v1/openapi.json`
//!   (generated from the handlers with utoipa) and browsable with Swagger UI at `/docs`; errors
//!   are one JSON shape ([`error::ApiError`]) that never holds SQL, a URL or a secret.
//! - **Logins by OpenID Connect or GitHub** ([`oidc`]): the code flow with PKCE and state, a
//!   verified e-mail address mapped to an account.
//! - **Jobs** ([`jobs`], [`api_jobs`]): backtests, evolve and training runs launched by
//!   researchers, a row each in the store, run as `dexlab` child processes by the server's
//!   runner with progress and cancellation; a restart loses none.
//! - **Real time** ([`events`]): the live engines' per-block events, tailed from the store (woken
//!   by PostgreSQL's NOTIFY) and fanned out to WebSocket clients from one reader.
//! - **Operations**: `/healthz`, `/readyz`, Prometheus `/metrics` ([`metrics`]), security
//!   headers (CSP, frame denial, no-sniff, HSTS under TLS), a CORS allow-list, a request body
//!   limit, optional TLS ([`tls`]).
//!
//! It links the store, the lab's account and promotion code, and axum: no genevo, no burn, no
//! Polars.

pub mod api;
pub mod api_jobs;
pub mod auth;
pub mod error;
pub mod events;
pub mod jobs;
pub mod jobs_nats;
pub mod limits;
pub mod metrics;
pub mod oidc;
pub mod pages;
pub mod routes;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use axum::{Json, Router};
use dexlab_store::Store;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

pub use error::ApiError;

use crate::auth::{AuthConfig, Tokens};
use crate::limits::{Backoff, Buckets, LimitConfig};
use crate::metrics::Metrics;

/// The default address: loopback only.
pub const DEFAULT_BIND: &str = "127.0.0.1:8771";
/// The largest request body, by default.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {}: {detail}", path.display())]
    Tls { path: PathBuf, detail: String },
    #[error("--cors-origin {origin:?}: {detail}")]
    Cors { origin: String, detail: String },
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

/// How the server runs, validated once at start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub auth: AuthConfig,
    pub limits: LimitConfig,
    /// Origins allowed to call the API from a browser (`https://host:port`); none: same origin
    /// only.
    pub cors_origins: Vec<String>,
    /// A PEM certificate chain and private key: serve HTTPS (and send HSTS).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// A static bearer token that may read `/metrics` (for Prometheus).
    pub metrics_token: Option<Secret>,
    pub body_limit: usize,
    /// Recorded with promotions.
    pub git_commit: String,
    /// Run launched jobs (none: jobs can be listed, not launched).
    pub jobs: Option<jobs::JobsConfig>,
    /// An OpenID Connect provider accounts may log in with.
    pub oidc: Option<oidc::OidcConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            auth: AuthConfig::random(),
            limits: LimitConfig::default(),
            cors_origins: Vec::new(),
            tls: None,
            metrics_token: None,
            body_limit: DEFAULT_BODY_LIMIT,
            git_commit: "unknown".into(),
            jobs: None,
            oidc: None,
        }
    }
}

/// A string that `Debug` never shows.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What the handlers see of the config.
pub struct Settings {
    pub metrics_token_hash: Option<Vec<u8>>,
    pub git_commit: String,
    pub hsts: bool,
}

/// The rate limiters.
pub struct Limiters {
    pub api_ip: Buckets,
    pub api_user: Buckets,
    pub login_ip: Buckets,
    pub login_backoff: Backoff,
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub tokens: Arc<Tokens>,
    pub limits: Arc<Limiters>,
    /// Password checks at once.
    pub hashes: Arc<Semaphore>,
    pub metrics: Arc<Metrics>,
    pub config: Arc<Settings>,
    /// The pages' refresh-token rotations in progress.
    pub rotations: Arc<pages::Rotations>,
    /// The live events' reader, started by the first WebSocket client.
    hub: Arc<tokio::sync::OnceCell<Arc<events::Hub>>>,
    /// The job runner, when this server runs jobs.
    pub jobs: Option<Arc<jobs::Jobs>>,
    /// OpenID Connect logins.
    pub oidc: Arc<oidc::Oidc>,
}

impl AppState {
    /// The state of a server over `store`; starts the job runner when `config.jobs` says so
    /// (on the current tokio runtime).
    pub fn new(store: Store, config: &ServerConfig) -> Self {
        let l = &config.limits;
        AppState {
            jobs: config
                .jobs
                .clone()
                .map(|c| jobs::Jobs::start(store.clone(), c)),
            oidc: Arc::new(oidc::Oidc::new(config.oidc.clone())),
            store,
            tokens: Arc::new(Tokens::new(config.auth.clone())),
            limits: Arc::new(Limiters {
                api_ip: Buckets::new(l.api_per_sec, l.api_burst),
                api_user: Buckets::new(l.api_per_sec, l.api_burst),
                login_ip: Buckets::new(l.login_per_min / 60.0, l.login_per_min),
                login_backoff: Backoff::new(l.login_free_failures, l.login_max_backoff),
            }),
            hashes: Arc::new(Semaphore::new(auth::MAX_CONCURRENT_HASHES)),
            metrics: Arc::new(Metrics::new()),
            config: Arc::new(Settings {
                metrics_token_hash: config
                    .metrics_token
                    .as_ref()
                    .map(|t| Sha256::digest(t.0.as_bytes()).to_vec()),
                git_commit: config.git_commit.clone(),
                hsts: config.tls.is_some(),
            }),
            rotations: Arc::new(pages::Rotations::default()),
            hub: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// The live events' fan-out. Its reader starts on first use, from the newest event at that
    /// moment, read before this returns: a client that subscribes and then reads its backfill
    /// misses nothing (an event is either old enough for the backfill or new enough for the
    /// reader).
    pub async fn hub(&self) -> Result<Arc<events::Hub>, dexlab_store::StoreError> {
        self.hub
            .get_or_try_init(|| events::Hub::start(self.store.clone()))
            .await
            .cloned()
    }
}

/// The peer address of a connection, plain or TLS.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for ClientAddr {
    fn connect_info(s: IncomingStream<'_, TcpListener>) -> Self {
        ClientAddr(*s.remote_addr())
    }
}

impl Connected<IncomingStream<'_, tls::TlsListener>> for ClientAddr {
    fn connect_info(s: IncomingStream<'_, tls::TlsListener>) -> Self {
        ClientAddr(*s.remote_addr())
    }
}

/// The client's address (from the socket: forwarded headers are not trusted).
#[derive(Debug, Clone)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    pub fn of(ext: &axum::http::Extensions) -> Self {
        let socket = ext.get::<ConnectInfo<ClientAddr>>().map(|c| c.0.0);
        // Router tests stand a mock in for the socket.
        let mock = || {
            ext.get::<axum::extract::connect_info::MockConnectInfo<ClientAddr>>()
                .map(|m| m.0.0)
        };
        ClientIp(socket.or_else(mock).map(|a| a.ip()))
    }

    /// The rate limiters' key.
    pub fn key(&self) -> String {
        self.0
            .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
    }

    /// What the audit log records.
    pub fn text(&self) -> Option<String> {
        self.0.map(|ip| ip.to_string())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp::of(&parts.extensions))
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// The store answers a query.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = Object), (status = 503, body = ApiError)))]
pub async fn readyz(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    match s.store.ping().await {
        Ok(()) => Ok(Json(serde_json::json!({
            "status": "ready",
            "store": s.store.backend(),
        }))),
        Err(e) => {
            // The store's error stays in the server's log (it names no secret: the store scrubs
            // URLs); the client is told only which part is not ready.
            tracing::warn!("readyz: {e}");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("the {} store does not answer", s.store.backend()),
            ))
        }
    }
}

/// Prometheus metrics (OpenMetrics text): request latency per route, security counters,
/// trading sessions. A viewer's token or the server's metrics token.
#[utoipa::path(get, path = "/metrics", tag = "ops", security(("bearer" = [])),
    responses((status = 200, content_type = "application/openmetrics-text", body = String),
        (status = 401, body = ApiError)))]
pub async fn metrics(State(s): State<AppState>) -> Result<Response, ApiError> {
    let text = s.metrics.render(&s.store).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// The headers every answer carries: no framing, no sniffing, no referrer, a strict content
/// security policy (Swagger UI's pages need inline styles), no caching of API answers, and
/// HSTS under TLS.
async fn security_headers(State(hsts): State<bool>, req: Request, next: Next) -> Response {
    let docs = req.uri().path().starts_with("/docs");
    let api = req.uri().path().starts_with("/api/");
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    let csp = if docs {
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
         script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
         form-action 'self'; object-src 'none'"
    } else {
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; \
         object-src 'none'"
    };
    let set = |h: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::CONTENT_SECURITY_POLICY, csp);
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    // Not `no-referrer`: under it browsers send `Origin: null` with forms, which the pages'
    // same-origin check reads.
    set(h, header::REFERRER_POLICY, "same-origin");
    set(
        h,
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        h,
        HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=()",
    );
    if api {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    if hsts {
        set(
            h,
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        );
    }
    response
}

fn cors(origins: &[String]) -> Result<Option<CorsLayer>, ServeError> {
    if origins.is_empty() {
        return Ok(None);
    }
    let mut values = Vec::new();
    for o in origins {
        let bad = |detail: &str| ServeError::Cors {
            origin: o.clone(),
            detail: detail.to_owned(),
        };
        let scheme_ok = o.starts_with("https://") || o.starts_with("http://");
        if !scheme_ok || o.ends_with('/') || o.contains('*') || o.matches('/').count() != 2 {
            return Err(bad(
                "an origin is a scheme, host and optional port (`https://app.example:8443`), \
                 without a path, a trailing slash or a wildcard",
            ));
        }
        values.push(HeaderValue::from_str(o).map_err(|_| bad("not a valid header value"))?);
    }
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(values))
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(std::time::Duration::from_secs(600)),
    ))
}

/// The whole server as a router over `store`.
pub fn app(store: Store, config: &ServerConfig) -> Result<Router, ServeError> {
    let state = AppState::new(store, config);
    app_with_state(state, config)
}

/// [`app`] over a state the caller keeps (tests read its metrics and limiters).
pub fn app_with_state(state: AppState, config: &ServerConfig) -> Result<Router, ServeError> {
    let cors = cors(&config.cors_origins)?;
    let mut router = routes::router(&state)
        .merge(SwaggerUi::new("/docs").url("/api/v1/openapi.json", routes::ApiDoc::openapi()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(state.metrics.clone(), metrics::track))
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(from_fn_with_state(config.tls.is_some(), security_headers));
    if let Some(c) = cors {
        router = router.layer(c);
    }
    Ok(router.with_state(state))
}

/// Serves the server over `store` on `addr` until `stop` resolves; `bound` is told the address
/// actually bound (port 0 picks a free one).
pub async fn serve(
    store: Store,
    config: ServerConfig,
    addr: SocketAddr,
    bound: impl FnOnce(SocketAddr),
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let tls = match &config.tls {
        Some((cert, key)) => Some(tls::config(cert, key)?),
        None => None,
    };
    let router = app(store, &config)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    bound(local);
    let service = router.into_make_service_with_connect_info::<ClientAddr>();
    match tls {
        None => axum::serve(listener, service)
            .with_graceful_shutdown(stop)
            .await
            .map_err(ServeError::Serve),
        Some(tls) => {
            let listener = tls::TlsListener::new(listener, tls)
                .map_err(|source| ServeError::Bind { addr, source })?;
            axum::serve(listener, service)
                .with_graceful_shutdown(stop)
                .await
                .map_err(ServeError::Serve)
        }
    }
}
