-- Operators' risk commands to running sessions, SQLite dialect. Keep in step with
-- ../postgres/0005_risk_commands.sql: same columns and keys.
--
-- The kill switch and its release: `dexlab live kill` (and the dashboard) inserts a row; the
-- session's engine reads its pending rows before each block, applies them at that block's
-- decision, records them in the session folder and fills in applied_block and applied_at. A row
-- is never deleted. command is kill or clear; trip names the halt a clear ends (kill_switch,
-- reverts or daily_loss), NULL for a kill; issued_at and applied_at are unix seconds.

CREATE TABLE risk_commands (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id     BIGINT NOT NULL REFERENCES sessions (id),
    command        TEXT   NOT NULL,
    trip           TEXT,
    reason         TEXT   NOT NULL,
    issued_by      TEXT   NOT NULL,
    issued_at      BIGINT NOT NULL,
    applied_block  BIGINT,
    applied_at     BIGINT
);

CREATE INDEX risk_commands_pending ON risk_commands (session_id, applied_block);
