//! dexlab-store scenarios. Each runs twice: on SQLite in a temporary directory and on a fresh
//! PostgreSQL database (created and dropped per test, so tests can run in parallel). PostgreSQL
//! is `postgres://postgres@127.0.0.1:5432/postgres` unless `DEXLAB_TEST_POSTGRES_URL` says
//! otherwise; when it is unreachable the PostgreSQL tests fail and say to run
//! `scripts/ensure-postgres.sh`.

/// Expands to `sqlite` and `postgres` tests running `$scenario(db: support::TestDb)`.
macro_rules! on_both_backends {
    ($scenario:ident) => {
        #[tokio::test]
        async fn sqlite() -> anyhow::Result<()> {
            crate::support::on_sqlite($scenario).await
        }

        #[tokio::test]
        async fn postgres() -> anyhow::Result<()> {
            crate::support::on_postgres($scenario).await
        }
    };
}

mod support;

mod accounts;
mod bad_url;
mod deployments;
mod experiment_state;
mod find_experiment;
mod float_exactness;
mod generations;
mod jobs;
mod live_events;
mod migrations;
mod models;
mod read_only;
mod risk_commands;
mod round_trip;
mod sessions;
mod text_columns;
mod url_scrubbing;
