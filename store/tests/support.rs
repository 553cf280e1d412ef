//! Per-test databases on both backends.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use dexlab_store::{NewExperiment, Store, scrub_url};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A freshly migrated, empty store and the URL it was opened with.
pub struct TestDb {
    pub store: Store,
    pub url: String,
}

/// Runs `scenario` on a new SQLite file (in directories that do not exist yet).
pub async fn on_sqlite<F, Fut>(scenario: F) -> anyhow::Result<()>
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("not yet/created/dexlab.sqlite");
    let url = format!("sqlite:{}", path.display()).replace(' ', "%20");
    let store = Store::connect(&url).await?;
    assert_eq!(store.backend(), "sqlite");
    assert!(path.is_file(), "connect should create {}", path.display());
    let outcome = scenario(TestDb {
        store: store.clone(),
        url,
    })
    .await;
    store.close().await;
    outcome
}

/// Runs `scenario` on a new PostgreSQL database, dropped afterwards whatever happened.
pub async fn on_postgres<F, Fut>(scenario: F) -> anyhow::Result<()>
where
    F: FnOnce(TestDb) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "dexlab_store_test_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let admin_url = postgres_admin_url();
    let mut admin = postgres_admin().await?;
    // A leftover from a crashed run with the same pid would make CREATE fail.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .with_context(|| format!("creating test database {name}"))?;

    let url = with_database(&admin_url, &name);
    // Spawned so that a panicking scenario still lets us drop the database below.
    let outcome = tokio::spawn(async move {
        let store = Store::connect(&url).await?;
        assert_eq!(store.backend(), "postgres");
        let outcome = scenario(TestDb {
            store: store.clone(),
            url,
        })
        .await;
        store.close().await;
        outcome
    })
    .await;

    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .with_context(|| format!("dropping test database {name}"))?;
    admin.close().await?;
    match outcome {
        Ok(result) => result,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

pub fn postgres_admin_url() -> String {
    std::env::var("DEXLAB_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_owned())
}

/// A connection to the test server's maintenance database, or an error saying how to get one.
pub async fn postgres_admin() -> anyhow::Result<PgConnection> {
    let url = postgres_admin_url();
    let hint = "run `bash scripts/ensure-postgres.sh` (installs and starts a local PostgreSQL), \
                or set DEXLAB_TEST_POSTGRES_URL to a server where this user may CREATE DATABASE";
    match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(&url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => bail!(
            "PostgreSQL is not reachable at {}: {e}; {hint}",
            scrub_url(&url)
        ),
        Err(_) => bail!(
            "PostgreSQL at {} did not answer within 10 s; {hint}",
            scrub_url(&url)
        ),
    }
}

/// `url` with its database name replaced by `name` (query parameters kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// An experiment as the CLI would create it; `seed` is past i64 on purpose.
pub fn experiment(name: &str, created_at: i64) -> NewExperiment {
    NewExperiment {
        name: name.to_owned(),
        strategy: "mean_reversion".to_owned(),
        dataset: "univ2-weth-usdc".to_owned(),
        dataset_hash: "9f86d081884c7d65".to_owned(),
        config: json!({"population": 40, "mutation": 0.1, "windows": [3, 7], "nested": {"x": null}}),
        seed: u64::MAX,
        created_at,
    }
}

/// An error and all its sources, as `anyhow`'s `{:#}` would print them, plus its `Debug`.
pub fn everything_printed(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out.push('\n');
    out.push_str(&format!("{e:?}"));
    out
}

#[test]
fn with_database_replaces_only_the_name() {
    assert_eq!(
        with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "t1"),
        "postgres://u:p@h:5432/t1?sslmode=disable"
    );
    assert_eq!(with_database("postgresql://h", "t2"), "postgresql://h/t2");
}
