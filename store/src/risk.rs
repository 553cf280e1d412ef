//! Operators' risk commands to running sessions: the kill switch and its release.
//!
//! `dexlab live kill` (and the dashboard) adds a row to a session; the session's engine reads
//! its pending rows before each block ([`Store::pending_risk_commands`]), applies them at that
//! block's decision, records them in the session folder and marks each row applied with the block
//! ([`Store::mark_risk_command_applied`]). Rows are never deleted: they are the kill switch's
//! history.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use crate::{Result, Store, StoreError, db, found, get, to_bigint, u64_column};

/// What an operator asks of a running session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum RiskCommand {
    /// Stop sending new bundles from the next block on.
    Kill,
    /// End the halt named by `trip` (`kill_switch`, `reverts` or `daily_loss`).
    Clear { trip: String },
}

/// The halts a clear may name.
pub const TRIPS: [&str; 4] = ["kill_switch", "reverts", "daily_loss", "reconciliation"];

/// A stored command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskCommandRow {
    pub id: i64,
    pub session_id: i64,
    #[serde(flatten)]
    pub command: RiskCommand,
    pub reason: String,
    pub issued_by: String,
    /// Unix seconds.
    pub issued_at: i64,
    /// The block whose decision it bound; `None` while pending.
    pub applied_block: Option<u64>,
    pub applied_at: Option<i64>,
}

impl Store {
    /// Adds a command to session `session_id`; returns its id. A clear must name one of
    /// [`TRIPS`]; the session must exist.
    pub async fn add_risk_command(
        &self,
        session_id: i64,
        command: &RiskCommand,
        reason: &str,
        issued_by: &str,
        issued_at: i64,
    ) -> Result<i64> {
        const OP: &str = "add_risk_command";
        let target = || format!("session {session_id}");
        let (name, trip) = match command {
            RiskCommand::Kill => ("kill", None),
            RiskCommand::Clear { trip } => {
                if !TRIPS.contains(&trip.as_str()) {
                    return Err(StoreError::InvalidName {
                        op: OP,
                        what: "halt",
                        name: trip.clone(),
                        reason: "a clear names one of kill_switch, reverts, daily_loss",
                    });
                }
                ("clear", Some(trip.as_str()))
            }
        };
        if self.find_session(&session_id.to_string()).await?.is_none() {
            return Err(StoreError::NotFound {
                op: OP,
                target: target(),
            });
        }
        sqlx::query_scalar(
            "INSERT INTO risk_commands (session_id, command, trip, reason, issued_by, issued_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING id",
        )
        .bind(session_id)
        .bind(name)
        .bind(trip)
        .bind(reason)
        .bind(issued_by)
        .bind(issued_at)
        .fetch_one(&self.pool)
        .await
        .map_err(db(OP, target))
    }

    /// Session `session_id`'s commands not applied yet, oldest first.
    pub async fn pending_risk_commands(&self, session_id: i64) -> Result<Vec<RiskCommandRow>> {
        self.risk_commands_where(
            "pending_risk_commands",
            session_id,
            "AND applied_block IS NULL",
        )
        .await
    }

    /// Every command of session `session_id`, oldest first.
    pub async fn risk_commands(&self, session_id: i64) -> Result<Vec<RiskCommandRow>> {
        self.risk_commands_where("risk_commands", session_id, "")
            .await
    }

    async fn risk_commands_where(
        &self,
        op: &'static str,
        session_id: i64,
        filter: &'static str,
    ) -> Result<Vec<RiskCommandRow>> {
        let sql = format!(
            "SELECT id, session_id, command, trip, reason, issued_by, issued_at, applied_block,
                    applied_at
             FROM risk_commands WHERE session_id = $1 {filter} ORDER BY id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(session_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db(op, || format!("session {session_id}")))?;
        rows.iter().map(|r| command_from_row(op, r)).collect()
    }

    /// Marks command `id` applied at `block`, at `at` (unix seconds). A command is applied once:
    /// marking it again is [`StoreError::NotFound`].
    pub async fn mark_risk_command_applied(&self, id: i64, block: u64, at: i64) -> Result<()> {
        const OP: &str = "mark_risk_command_applied";
        let target = || format!("pending risk command {id}");
        let done = sqlx::query(
            "UPDATE risk_commands SET applied_block = $1, applied_at = $2
             WHERE id = $3 AND applied_block IS NULL",
        )
        .bind(to_bigint(OP, &target, "applied_block", block)?)
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db(OP, target))?;
        found(OP, done.rows_affected(), target)
    }
}

fn command_from_row(op: &'static str, row: &AnyRow) -> Result<RiskCommandRow> {
    let id: i64 = get(op, row, "id")?;
    let target = || format!("risk command {id}");
    let name: String = get(op, row, "command")?;
    let trip: Option<String> = get(op, row, "trip")?;
    let command = match (name.as_str(), trip) {
        ("kill", None) => RiskCommand::Kill,
        ("clear", Some(trip)) => RiskCommand::Clear { trip },
        (other, trip) => {
            return Err(StoreError::Corrupt {
                op,
                target: target(),
                field: "command",
                detail: format!("command {other:?} with trip {trip:?}"),
            });
        }
    };
    let applied: Option<i64> = get(op, row, "applied_block")?;
    Ok(RiskCommandRow {
        id,
        session_id: get(op, row, "session_id")?,
        command,
        reason: get(op, row, "reason")?,
        issued_by: get(op, row, "issued_by")?,
        issued_at: get(op, row, "issued_at")?,
        applied_block: match applied {
            None => None,
            Some(_) => Some(u64_column(op, row, "applied_block", target)?),
        },
        applied_at: get(op, row, "applied_at")?,
    })
}
