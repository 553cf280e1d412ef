//! The session registry: one row per paper or live trading session folder.
//!
//! The folder stays the session (`session.json`, `blocks.jsonl`); the row is what the workbench
//! needs to list sessions without opening every folder: what the session runs, where it stands,
//! how far it got, and the process that last ran it.
//!
//! A folder is one session. Starting a session in a folder that has a row resumes that row
//! (running again, under the new process) when the row records the same session: same mode,
//! chain, strategy, parameters, model and bootstrap block. Anything else is an error naming each
//! difference, so that a row never silently starts describing other trading. Folders are stored
//! as absolute paths, which never read as an id, so [`Store::find_session`] is never ambiguous.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::any::AnyRow;

use crate::{
    Result, SessionMode, SessionStatus, Store, StoreError, db, found, get, json_column,
    name_column, to_bigint, to_json, u64_column,
};

/// The start of every query that feeds `session_from_row`, as a literal for `concat!`.
macro_rules! select_sessions {
    () => {
        "SELECT id, dir, mode, chain_id, strategy, params, model_hash, bootstrap_block, status,
                blocks, last_block, bundles, fills, node_mismatches, error, pid, host,
                created_at, updated_at
         FROM sessions "
    };
}

/// A session about to be started, or resumed (see [`Store::start_session`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewSessionRow {
    /// The session folder, as an absolute path. Unique: one row per folder.
    pub dir: String,
    pub mode: SessionMode,
    pub chain_id: u64,
    pub strategy: String,
    /// The strategy's parameters.
    pub params: Value,
    /// Content hash of the model directory a model-driven strategy reads; `None` without one.
    pub model_hash: Option<String>,
    /// The session starts from the pools' state at the end of this block.
    pub bootstrap_block: u64,
    /// The process running it.
    pub pid: i64,
    pub host: String,
    /// Unix seconds: the row's `updated_at`, and its `created_at` when the session is new.
    pub started_at: i64,
}

/// How far a session got, as of `updated_at`: what [`Store::update_session`] and
/// [`Store::finish_session`] write. Counts are of the whole session, earlier runs of a resumed
/// session included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SessionProgress {
    /// Blocks in the session.
    pub blocks: u64,
    /// The last block recorded; `None` before the first.
    pub last_block: Option<u64>,
    /// Bundles sent.
    pub bundles: u64,
    /// Bundles filled.
    pub fills: u64,
    /// Paper mode: bundles for which the node, simulating them, did not give the amount the
    /// engine's math expects (or could not simulate them).
    pub node_mismatches: u64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRow {
    pub id: i64,
    /// The session folder, an absolute path.
    pub dir: String,
    pub mode: SessionMode,
    pub chain_id: u64,
    pub strategy: String,
    pub params: Value,
    pub model_hash: Option<String>,
    pub bootstrap_block: u64,
    /// [`SessionStatus::Running`] when started or resumed.
    pub status: SessionStatus,
    /// All zero (`updated_at` aside) until the first [`Store::update_session`].
    #[serde(flatten)]
    pub progress: SessionProgress,
    /// Why the session failed (or stopped, when a reason was given); cleared when it is resumed.
    pub error: Option<String>,
    /// The process that last started it.
    pub pid: i64,
    pub host: String,
    /// Unix seconds when it was first started.
    pub created_at: i64,
}

impl Store {
    /// Registers a session starting in `s.dir`, status `running`, and returns its id.
    ///
    /// A folder that already has a row is a resumed session: when mode, chain id, strategy,
    /// parameters, model hash and bootstrap block all match, the row is running again under
    /// `s.pid` and `s.host`, `updated_at` is `s.started_at`, an earlier error is cleared, its
    /// progress and `created_at` are kept, and its id is returned. Any difference is
    /// [`StoreError::SessionMismatch`], naming each one, and the row is untouched. A relative
    /// `dir` is [`StoreError::SessionDirNotAbsolute`].
    pub async fn start_session(&self, s: &NewSessionRow) -> Result<i64> {
        const OP: &str = "start_session";
        let target = || format!("session {}", s.dir);
        if !Path::new(&s.dir).is_absolute() {
            return Err(StoreError::SessionDirNotAbsolute {
                op: OP,
                dir: s.dir.clone(),
            });
        }
        let params = to_json(OP, &target, "params", &s.params)?;
        let bootstrap_block = to_bigint(OP, &target, "bootstrap_block", s.bootstrap_block)?;
        // DO NOTHING on the folder, then compare with the row that holds it: no transaction to
        // abort, and two starts of the same session at once both resume one row.
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO sessions (dir, mode, chain_id, strategy, params, model_hash,
                                   bootstrap_block, status, pid, host, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8, $9, $10, $10)
             ON CONFLICT (dir) DO NOTHING
             RETURNING id",
        )
        .bind(&s.dir)
        .bind(s.mode.as_str())
        .bind(s.chain_id.to_string())
        .bind(&s.strategy)
        .bind(params)
        .bind(s.model_hash.as_deref())
        .bind(bootstrap_block)
        .bind(s.pid)
        .bind(&s.host)
        .bind(s.started_at)
        .fetch_optional(&self.pool)
        .await
        .map_err(db(OP, target))?;
        if let Some(id) = inserted {
            return Ok(id);
        }

        // Rows are never deleted, so the one that holds the folder is there.
        let held = self
            .session_by_dir(&s.dir)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                op: OP,
                target: format!("the session that holds folder {}", s.dir),
            })?;
        let differences = differences(&held, s);
        if !differences.is_empty() {
            return Err(StoreError::SessionMismatch {
                op: OP,
                dir: s.dir.clone(),
                id: held.id,
                differences,
            });
        }
        let done = sqlx::query(
            "UPDATE sessions SET status = 'running', error = NULL, pid = $1, host = $2,
                 updated_at = $3
             WHERE id = $4",
        )
        .bind(s.pid)
        .bind(&s.host)
        .bind(s.started_at)
        .bind(held.id)
        .execute(&self.pool)
        .await
        .map_err(db(OP, target))?;
        found(OP, done.rows_affected(), target)?;
        Ok(held.id)
    }

    /// Records how far session `id` got; its status and error are left as they are.
    pub async fn update_session(&self, id: i64, progress: &SessionProgress) -> Result<()> {
        self.write_session("update_session", id, progress, None)
            .await
    }

    /// Ends session `id` in `status` ([`SessionStatus::Stopped`] or [`SessionStatus::Failed`])
    /// with its last progress and the reason, if any (`None` clears an earlier one).
    pub async fn finish_session(
        &self,
        id: i64,
        status: SessionStatus,
        error: Option<&str>,
        progress: &SessionProgress,
    ) -> Result<()> {
        self.write_session("finish_session", id, progress, Some((status, error)))
            .await
    }

    /// Every session, newest first (by `created_at`, then id).
    pub async fn list_sessions(&self) -> Result<Vec<SessionRow>> {
        const OP: &str = "list_sessions";
        let rows = sqlx::query(concat!(
            select_sessions!(),
            "ORDER BY created_at DESC, id DESC"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db(OP, || "all sessions".to_owned()))?;
        rows.iter().map(|row| session_from_row(OP, row)).collect()
    }

    /// The session of the folder `dir` (absolute, as it was started), if any.
    pub async fn session_by_dir(&self, dir: &str) -> Result<Option<SessionRow>> {
        const OP: &str = "session_by_dir";
        let row = sqlx::query(concat!(select_sessions!(), "WHERE dir = $1"))
            .bind(dir)
            .fetch_optional(&self.pool)
            .await
            .map_err(db(OP, || format!("session {dir}")))?;
        row.map(|row| session_from_row(OP, &row)).transpose()
    }

    /// The session with this id (all digits) or folder (anything else; folders are absolute
    /// paths, never all digits).
    pub async fn find_session(&self, id_or_dir: &str) -> Result<Option<SessionRow>> {
        const OP: &str = "find_session";
        let key = id_or_dir.trim();
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
            // Too large for an id: no such session.
            let Ok(id) = key.parse::<i64>() else {
                return Ok(None);
            };
            let row = sqlx::query(concat!(select_sessions!(), "WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db(OP, || format!("session {id}")))?;
            return row.map(|row| session_from_row(OP, &row)).transpose();
        }
        self.session_by_dir(id_or_dir).await
    }

    /// Writes `progress`, and with `end` the status and error, to session `id`.
    async fn write_session(
        &self,
        op: &'static str,
        id: i64,
        progress: &SessionProgress,
        end: Option<(SessionStatus, Option<&str>)>,
    ) -> Result<()> {
        let target = || format!("session {id}");
        let count = |field, value| to_bigint(op, &target, field, value);
        let last_block = progress
            .last_block
            .map(|b| count("last_block", b))
            .transpose()?;
        let sql = match end {
            None => {
                "UPDATE sessions SET blocks = $1, last_block = $2, bundles = $3, fills = $4,
                     node_mismatches = $5, updated_at = $6
                 WHERE id = $7"
            }
            Some(_) => {
                "UPDATE sessions SET blocks = $1, last_block = $2, bundles = $3, fills = $4,
                     node_mismatches = $5, updated_at = $6, status = $7, error = $8
                 WHERE id = $9"
            }
        };
        let mut query = sqlx::query(sql)
            .bind(count("blocks", progress.blocks)?)
            .bind(last_block)
            .bind(count("bundles", progress.bundles)?)
            .bind(count("fills", progress.fills)?)
            .bind(count("node_mismatches", progress.node_mismatches)?)
            .bind(progress.updated_at);
        if let Some((status, error)) = end {
            query = query.bind(status.as_str()).bind(error);
        }
        let done = query
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db(op, target))?;
        found(op, done.rows_affected(), target)
    }
}

/// What `s` starts that the stored session `held` is not, one item per field, comma-separated;
/// empty when it is the same session.
fn differences(held: &SessionRow, s: &NewSessionRow) -> String {
    let model = |hash: &Option<String>| match hash {
        Some(h) => format!("model {h}"),
        None => "no model".to_owned(),
    };
    let mut out = Vec::new();
    if held.mode != s.mode {
        out.push(format!("mode {} (not {})", held.mode, s.mode));
    }
    if held.chain_id != s.chain_id {
        out.push(format!("chain id {} (not {})", held.chain_id, s.chain_id));
    }
    if held.strategy != s.strategy {
        out.push(format!(
            "strategy `{}` (not `{}`)",
            held.strategy, s.strategy
        ));
    }
    if held.params != s.params {
        out.push(format!("params {} (not {})", held.params, s.params));
    }
    if held.model_hash != s.model_hash {
        out.push(format!(
            "{} (not {})",
            model(&held.model_hash),
            model(&s.model_hash)
        ));
    }
    if held.bootstrap_block != s.bootstrap_block {
        out.push(format!(
            "bootstrap block {} (not {})",
            held.bootstrap_block, s.bootstrap_block
        ));
    }
    out.join(", ")
}

fn session_from_row(op: &'static str, row: &AnyRow) -> Result<SessionRow> {
    let id: i64 = get(op, row, "id")?;
    let target = || format!("session {id}");
    let chain_id: String = get(op, row, "chain_id")?;
    let last_block: Option<i64> = get(op, row, "last_block")?;
    Ok(SessionRow {
        id,
        dir: get(op, row, "dir")?,
        mode: name_column(op, row, "mode", target, SessionMode::from_name)?,
        chain_id: chain_id.parse().map_err(|e| StoreError::Corrupt {
            op,
            target: target(),
            field: "chain_id",
            detail: format!("{chain_id:?}: {e}"),
        })?,
        strategy: get(op, row, "strategy")?,
        params: json_column(op, row, "params", target)?,
        model_hash: get(op, row, "model_hash")?,
        bootstrap_block: u64_column(op, row, "bootstrap_block", target)?,
        status: name_column(op, row, "status", target, SessionStatus::from_name)?,
        progress: SessionProgress {
            blocks: u64_column(op, row, "blocks", target)?,
            last_block: last_block
                .map(|b| {
                    u64::try_from(b).map_err(|_| StoreError::Corrupt {
                        op,
                        target: target(),
                        field: "last_block",
                        detail: format!("negative block number {b}"),
                    })
                })
                .transpose()?,
            bundles: u64_column(op, row, "bundles", target)?,
            fills: u64_column(op, row, "fills", target)?,
            node_mismatches: u64_column(op, row, "node_mismatches", target)?,
            updated_at: get(op, row, "updated_at")?,
        },
        error: get(op, row, "error")?,
        pid: get(op, row, "pid")?,
        host: get(op, row, "host")?,
        created_at: get(op, row, "created_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(dir: &str) -> NewSessionRow {
        NewSessionRow {
            dir: dir.to_owned(),
            mode: SessionMode::Paper,
            chain_id: 31337,
            strategy: "mean_reversion".to_owned(),
            params: serde_json::json!({"window": 20, "z": 1.5}),
            model_hash: None,
            bootstrap_block: 100,
            pid: 1,
            host: "lab".to_owned(),
            started_at: 10,
        }
    }

    fn stored(s: &NewSessionRow) -> SessionRow {
        SessionRow {
            id: 7,
            dir: s.dir.clone(),
            mode: s.mode,
            chain_id: s.chain_id,
            strategy: s.strategy.clone(),
            params: s.params.clone(),
            model_hash: s.model_hash.clone(),
            bootstrap_block: s.bootstrap_block,
            status: SessionStatus::Stopped,
            progress: SessionProgress {
                blocks: 3,
                last_block: Some(103),
                bundles: 2,
                fills: 1,
                node_mismatches: 0,
                updated_at: 20,
            },
            error: None,
            pid: s.pid,
            host: s.host.clone(),
            created_at: s.started_at,
        }
    }

    #[test]
    fn a_resume_differs_only_in_what_identifies_the_session() {
        let s = new("/s/a");
        let held = stored(&s);
        // Another process, another time: the same session.
        let again = NewSessionRow {
            pid: 2,
            host: "other".into(),
            started_at: 99,
            ..s.clone()
        };
        assert_eq!(differences(&held, &again), "");
        let other = NewSessionRow {
            mode: SessionMode::Live,
            chain_id: 1,
            strategy: "momentum".into(),
            params: serde_json::json!({"window": 21, "z": 1.5}),
            model_hash: Some("ab12".into()),
            bootstrap_block: 200,
            ..s
        };
        assert_eq!(
            differences(&held, &other),
            "mode paper (not live), chain id 31337 (not 1), strategy `mean_reversion` \
             (not `momentum`), params {\"window\":20,\"z\":1.5} (not {\"window\":21,\"z\":1.5}), \
             no model (not model ab12), bootstrap block 100 (not 200)"
        );
    }

    #[test]
    fn a_row_serialises_flat_and_back() {
        let row = stored(&new("/s/a"));
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["blocks"], 3);
        assert_eq!(json["last_block"], 103);
        assert_eq!(json["updated_at"], 20);
        assert_eq!(json["mode"], "paper");
        assert_eq!(json["status"], "stopped");
        assert!(json.get("progress").is_none(), "{json}");
        let back: SessionRow = serde_json::from_value(json).unwrap();
        assert_eq!(back, row);
    }
}
