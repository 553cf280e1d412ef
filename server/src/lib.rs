//! dexlab-server: the dashboard and API server (issue 17), an axum router over the store of
//! `DATABASE_URL`. So far it serves what an orchestrator probes:
//! - `GET /healthz`: the process answers (200, `{"status": "ok"}`);
//! - `GET /readyz`: the store answers a query (200), or 503 with the one JSON error shape the
//!   whole API will use, which never holds SQL or a URL's credentials.
//!
//! Accounts (`dexlab users`), tokens, the API proper, its OpenAPI description and the pages come
//! next. It links the store and axum only: no genevo, no burn, no Polars.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use dexlab_store::Store;
use serde::Serialize;

/// The default address: loopback only.
pub const DEFAULT_BIND: &str = "127.0.0.1:8771";

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

/// The API's one error shape: a stable machine code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub error: &'static str,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self)).into_response()
    }
}

#[derive(Clone)]
struct AppState {
    store: Store,
}

/// The router over `store`.
pub fn router(store: Store) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { store })
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    match s.store.ping().await {
        Ok(()) => Ok(Json(serde_json::json!({
            "status": "ready",
            "store": s.store.backend(),
        }))),
        Err(e) => {
            // The store's error stays in the server's log (it names no secret: the store scrubs
            // URLs); the client is told only which part is not ready.
            tracing::warn!("readyz: {e}");
            Err(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                error: "store_unavailable",
                message: format!("the {} store does not answer", s.store.backend()),
            })
        }
    }
}

/// Serves `router(store)` on `addr` until `stop` resolves; `bound` is told the address actually
/// bound (port 0 picks a free one).
pub async fn serve(
    store: Store,
    addr: SocketAddr,
    bound: impl FnOnce(SocketAddr),
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    bound(local);
    axum::serve(listener, router(store))
        .with_graceful_shutdown(stop)
        .await
        .map_err(ServeError::Serve)
}
