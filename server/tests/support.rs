//! The server over a real store (SQLite in a temporary directory, or a fresh PostgreSQL
//! database), driven in process with `tower::ServiceExt::oneshot`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use dexlab_lab::accounts::{AddUser, add_user};
use dexlab_server::auth::{new_family, token_hash};
use dexlab_server::limits::LimitConfig;
use dexlab_server::{AppState, ClientAddr, ServerConfig};
use dexlab_store::{Role, Store, UserRow};
use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tower::ServiceExt;

/// Every account's password in these tests.
pub const PASSWORD: &str = "correct horse battery staple";

/// A server over a store, with one account per role (`viewer`, `researcher`, …).
pub struct Server {
    pub app: Router,
    pub state: AppState,
    pub store: Store,
    pub users: Vec<UserRow>,
}

/// A response: status, headers, JSON body (`Null` when the body is not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

/// Limits high enough that only the tests that mean to meet them do.
pub fn roomy() -> LimitConfig {
    LimitConfig {
        api_per_sec: 1e6,
        api_burst: 1e6,
        login_per_min: 1e6,
        login_free_failures: 1000,
        ..LimitConfig::default()
    }
}

impl Server {
    pub async fn new(store: Store, config: ServerConfig) -> anyhow::Result<Server> {
        let mut users = Vec::new();
        for role in Role::ALL {
            let (row, _) = add_user(
                &store,
                &AddUser {
                    username: role.as_str().to_owned(),
                    role,
                    email: Some(format!("{role}@example.test")),
                    password: Some(PASSWORD.to_owned()),
                    by: "test".into(),
                    at: 1,
                },
            )
            .await?;
            users.push(row);
        }
        let state = AppState::new(store.clone(), &config);
        let app = dexlab_server::app_with_state(state.clone(), &config)?.layer(MockConnectInfo(
            ClientAddr(SocketAddr::from(([192, 0, 2, 7], 40000))),
        ));
        Ok(Server {
            app,
            state,
            store,
            users,
        })
    }

    pub fn user(&self, role: Role) -> &UserRow {
        self.users.iter().find(|u| u.role == role).unwrap()
    }

    /// A login of `role`'s account made directly (no password check): its access token and
    /// refresh token.
    pub async fn mint(&self, role: Role) -> anyhow::Result<(String, String)> {
        let user = self.user(role).clone();
        let family = new_family();
        let now = dexlab_server::now();
        let (access, _) = self.state.tokens.access(&user, &family, now);
        let (refresh, row) = self.state.tokens.refresh(user.id, &family, now);
        assert_eq!(row.token_hash, token_hash(&refresh));
        self.store.add_refresh_token(&row).await?;
        Ok((access, refresh))
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        self.send(req).await
    }

    pub async fn send(&self, req: Request<Body>) -> Answer {
        let response = self.app.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn login(&self, username: &str, password: &str) -> Answer {
        self.call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(serde_json::json!({ "username": username, "password": password })),
        )
        .await
    }
}

/// Runs `scenario` on a new SQLite store.
pub async fn on_sqlite<F, Fut>(scenario: F) -> anyhow::Result<()>
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite:{}", dir.path().join("s.sqlite").display());
    let store = Store::connect(&url).await?;
    let outcome = scenario(store.clone()).await;
    store.close().await;
    outcome
}

pub fn postgres_admin_url() -> String {
    std::env::var("DEXLAB_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Runs `scenario` on a new PostgreSQL database, dropped afterwards whatever happened.
pub async fn on_postgres<F, Fut>(scenario: F) -> anyhow::Result<()>
where
    F: FnOnce(Store) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "dexlab_server_test_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let admin_url = postgres_admin_url();
    let mut admin = PgConnection::connect(&admin_url).await.with_context(|| {
        "PostgreSQL is not reachable; run `bash scripts/ensure-postgres.sh` or set \
         DEXLAB_TEST_POSTGRES_URL"
    })?;
    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    sqlx::raw_sql(AssertSqlSafe(drop.clone()))
        .execute(&mut admin)
        .await?;
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let url = format!("{base}/{name}");
    let outcome = tokio::spawn(async move {
        let store = Store::connect(&url).await?;
        let outcome = scenario(store.clone()).await;
        store.close().await;
        outcome
    })
    .await;
    sqlx::raw_sql(AssertSqlSafe(drop))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    match outcome {
        Ok(r) => r,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}
