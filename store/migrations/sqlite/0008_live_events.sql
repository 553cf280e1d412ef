-- Trading sessions' per-block events, SQLite dialect. Keep in step with
-- ../postgres/0008_live_events.sql: same columns and keys.
--
-- The live engine adds one row per block it steps (what it sent, what settled, equity and
-- PnL, halts in force, time in the engine) and prunes each session to its most recent rows;
-- the dashboard server tails the table by id (on PostgreSQL it is woken by NOTIFY dexlab_live)
-- and fans the rows out to its WebSocket clients. at_ms is unix milliseconds; payload is JSON.

CREATE TABLE live_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  BIGINT NOT NULL REFERENCES sessions (id),
    block       BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    payload     TEXT   NOT NULL
);

CREATE INDEX live_events_session ON live_events (session_id, id);
