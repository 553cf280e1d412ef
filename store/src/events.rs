//! Trading sessions' per-block events, for the dashboard's real-time pages.
//!
//! The live engine adds one row per block ([`Store::add_live_event`]) and keeps each session to
//! its most recent rows ([`Store::prune_live_events`]). Readers tail the table by id
//! ([`Store::live_events_after`]). On PostgreSQL the insert also sends `NOTIFY dexlab_live` in
//! the same statement, and [`Store::listen_live`] wakes a reader as soon as it commits, across
//! processes and machines; on SQLite a reader polls.

use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;

use crate::url::Backend;
use crate::{Result, Store, StoreError, db, get, json_column, to_bigint, to_json, u64_column};

/// The PostgreSQL notification channel of new events.
pub const LIVE_CHANNEL: &str = "dexlab_live";

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveEventRow {
    /// Increasing in insertion order.
    pub id: i64,
    pub session_id: i64,
    pub block: u64,
    /// Unix milliseconds when the engine wrote it.
    pub at_ms: i64,
    pub payload: Value,
}

fn event_from_row(op: &'static str, row: &AnyRow) -> Result<LiveEventRow> {
    let id: i64 = get(op, row, "id")?;
    let target = || format!("live event {id}");
    Ok(LiveEventRow {
        id,
        session_id: get(op, row, "session_id")?,
        block: u64_column(op, row, "block", target)?,
        at_ms: get(op, row, "at_ms")?,
        payload: json_column(op, row, "payload", target)?,
    })
}

/// Wakes a reader when events are added (PostgreSQL).
pub struct LiveListener {
    inner: sqlx::postgres::PgListener,
}

impl LiveListener {
    /// Waits for the next notification; an error means the connection dropped (the listener
    /// reconnects on the next call, and events added meanwhile are still in the table).
    pub async fn wait(&mut self) -> Result<()> {
        self.inner
            .recv()
            .await
            .map(|_| ())
            .map_err(db("listen_live", || LIVE_CHANNEL.to_owned()))
    }
}

impl Store {
    /// Adds session `session_id`'s event of `block`; returns its id. On PostgreSQL, listeners
    /// are notified when it commits.
    pub async fn add_live_event(
        &self,
        session_id: i64,
        block: u64,
        at_ms: i64,
        payload: &Value,
    ) -> Result<i64> {
        const OP: &str = "add_live_event";
        let target = || format!("session {session_id} block {block}");
        let text = to_json(OP, &target, "payload", payload)?;
        let block = to_bigint(OP, &target, "block", block)?;
        let sql = match self.backend {
            Backend::Sqlite => {
                "INSERT INTO live_events (session_id, block, at_ms, payload)
                 VALUES ($1, $2, $3, $4) RETURNING id"
            }
            Backend::Postgres => {
                "WITH added AS (
                     INSERT INTO live_events (session_id, block, at_ms, payload)
                     VALUES ($1, $2, $3, $4) RETURNING id)
                 SELECT id FROM added, LATERAL (SELECT pg_notify('dexlab_live', '')) AS n"
            }
        };
        sqlx::query_scalar(sql)
            .bind(session_id)
            .bind(block)
            .bind(at_ms)
            .bind(text)
            .fetch_one(&self.pool)
            .await
            .map_err(db(OP, target))
    }

    /// Up to `limit` events with an id above `after`, oldest first.
    pub async fn live_events_after(&self, after: i64, limit: u32) -> Result<Vec<LiveEventRow>> {
        const OP: &str = "live_events_after";
        let rows = sqlx::query(
            "SELECT id, session_id, block, at_ms, payload FROM live_events
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db(OP, || format!("live events after {after}")))?;
        rows.iter().map(|r| event_from_row(OP, r)).collect()
    }

    /// Session `session_id`'s last `limit` events, oldest first.
    pub async fn recent_live_events(
        &self,
        session_id: i64,
        limit: u32,
    ) -> Result<Vec<LiveEventRow>> {
        const OP: &str = "recent_live_events";
        let rows = sqlx::query(
            "SELECT id, session_id, block, at_ms, payload FROM live_events
             WHERE session_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(session_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db(OP, || format!("session {session_id}")))?;
        let mut out: Vec<LiveEventRow> = rows
            .iter()
            .map(|r| event_from_row(OP, r))
            .collect::<Result<_>>()?;
        out.reverse();
        Ok(out)
    }

    /// The newest event's id (0 when there is none): where a new reader starts.
    pub async fn last_live_event_id(&self) -> Result<i64> {
        const OP: &str = "last_live_event_id";
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM live_events")
            .fetch_one(&self.pool)
            .await
            .map_err(db(OP, || "live events".to_owned()))?;
        Ok(id.unwrap_or(0))
    }

    /// Deletes session `session_id`'s events but its newest `keep`; returns how many went.
    pub async fn prune_live_events(&self, session_id: i64, keep: u32) -> Result<u64> {
        const OP: &str = "prune_live_events";
        let done = sqlx::query(
            "DELETE FROM live_events WHERE session_id = $1 AND id <= COALESCE(
                 (SELECT id FROM live_events WHERE session_id = $1
                  ORDER BY id DESC LIMIT 1 OFFSET $2), 0)",
        )
        .bind(session_id)
        .bind(i64::from(keep))
        .execute(&self.pool)
        .await
        .map_err(db(OP, || format!("session {session_id}")))?;
        Ok(done.rows_affected())
    }

    /// A listener woken by every event added (PostgreSQL); `None` on SQLite, whose readers
    /// poll.
    pub async fn listen_live(&self) -> Result<Option<LiveListener>> {
        const OP: &str = "listen_live";
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let shown = self.url.to_string();
        let mut inner = sqlx::postgres::PgListener::connect(&self.raw_url)
            .await
            .map_err(|source| StoreError::Database {
                op: OP,
                target: shown.clone(),
                source,
            })?;
        inner
            .listen(LIVE_CHANNEL)
            .await
            .map_err(db(OP, move || shown.clone()))?;
        Ok(Some(LiveListener { inner }))
    }
}
