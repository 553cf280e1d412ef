-- dexlab trading sessions, SQLite dialect. Keep in step with ../postgres/0004_sessions.sql: same
-- columns and keys.
--
-- One row per paper or live session folder (session.json + blocks.jsonl, written by
-- dexlab-live), so that the workbench can list sessions without opening every folder. The folder
-- stays the session; the row is what it runs and how far it got. dir is the folder's absolute
-- path and identifies the session: starting a session in a folder that has a row resumes that
-- row (same mode, chain, strategy, parameters, model and bootstrap block, or an error; see
-- Store::start_session). params is JSON (TEXT); chain_id is decimal TEXT (a u64, like the seeds);
-- blocks is the number of blocks in the session, last_block the highest recorded; status is
-- running, stopped or failed, with the reason of a failure in error. pid and host: the process
-- that last ran it; created_at and updated_at are unix seconds.

CREATE TABLE sessions (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    dir              TEXT   NOT NULL UNIQUE,
    mode             TEXT   NOT NULL,
    chain_id         TEXT   NOT NULL,
    strategy         TEXT   NOT NULL,
    params           TEXT   NOT NULL,
    model_hash       TEXT,
    bootstrap_block  BIGINT NOT NULL,
    status           TEXT   NOT NULL DEFAULT 'running',
    blocks           BIGINT NOT NULL DEFAULT 0,
    last_block       BIGINT,
    bundles          BIGINT NOT NULL DEFAULT 0,
    fills            BIGINT NOT NULL DEFAULT 0,
    node_mismatches  BIGINT NOT NULL DEFAULT 0,
    error            TEXT,
    pid              BIGINT NOT NULL,
    host             TEXT   NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
