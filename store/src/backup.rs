//! What a backup needs of the store: a consistent copy of a SQLite store taken while others
//! write, and, after a restore into another place, the model and session folders pointed at
//! where they now are.

use std::path::Path;

use crate::url::Backend;
use crate::{Result, Store, StoreError, db, found};

impl Store {
    /// Writes a consistent copy of this SQLite store to `path` (SQLite's `VACUUM INTO`: one
    /// read transaction, so writers carry on and the copy is of one moment). `path` must not
    /// exist. A PostgreSQL store is copied with `pg_dump` instead: [`StoreError::WrongBackend`].
    pub async fn snapshot_sqlite(&self, path: &Path) -> Result<()> {
        const OP: &str = "snapshot_sqlite";
        if self.backend != Backend::Sqlite {
            return Err(StoreError::WrongBackend {
                op: OP,
                detail: format!(
                    "{} is PostgreSQL; its consistent copy is pg_dump's, not SQLite's VACUUM INTO",
                    self.url
                ),
            });
        }
        let target = || path.display().to_string();
        sqlx::query("VACUUM INTO $1")
            .bind(path.to_string_lossy().into_owned())
            .execute(&self.pool)
            .await
            .map_err(db(OP, target))?;
        Ok(())
    }

    /// Points model `id` at `dir` (its folder restored elsewhere).
    pub async fn relocate_model(&self, id: i64, dir: &str) -> Result<()> {
        self.relocate(
            "relocate_model",
            "UPDATE models SET dir = $1 WHERE id = $2",
            "model",
            id,
            dir,
        )
        .await
    }

    /// Points session `id` at `dir` (its folder restored elsewhere).
    pub async fn relocate_session(&self, id: i64, dir: &str) -> Result<()> {
        self.relocate(
            "relocate_session",
            "UPDATE sessions SET dir = $1 WHERE id = $2",
            "session",
            id,
            dir,
        )
        .await
    }

    async fn relocate(
        &self,
        op: &'static str,
        sql: &'static str,
        what: &str,
        id: i64,
        dir: &str,
    ) -> Result<()> {
        let target = || format!("{what} {id}");
        let done = sqlx::query(sql)
            .bind(dir)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db(op, target))?;
        found(op, done.rows_affected(), target)
    }

    /// Whether the PostgreSQL database at `url` has no table in its `public` schema: nothing a
    /// restore would overwrite. Asked without migrating it (a restore brings its own schema,
    /// which the next connection then migrates forward).
    pub async fn postgres_is_empty(url: &str) -> Result<bool> {
        use sqlx::Connection;
        const OP: &str = "postgres_is_empty";
        let shown = crate::scrub_url(url);
        let mut conn =
            sqlx::PgConnection::connect(url)
                .await
                .map_err(|source| StoreError::Connect {
                    backend: "postgres",
                    url: shown.clone(),
                    source,
                })?;
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_one(&mut conn)
        .await
        .map_err(db(OP, || shown.clone()))?;
        let _ = conn.close().await;
        Ok(n == 0)
    }
}
