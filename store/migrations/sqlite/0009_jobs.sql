-- Work launched from the dashboard (a backtest, an evolve run, a training run), SQLite dialect.
-- Keep in step with ../postgres/0009_jobs.sql: same columns and keys.
--
-- One row per job. kind is backtest, evolve or train; spec is the validated request (JSON) the
-- runner turns into the command's arguments; state moves queued -> running -> succeeded, failed
-- or cancelled (a queued job can be cancelled directly; a running one gets cancel_requested = 1
-- and its runner stops it). A runner claims a queued job by setting runner, started_at and
-- heartbeat_at in one statement, and beats every few seconds while it runs; a running job whose
-- heartbeat is stale (its runner died) goes back to the queue (attempts counts the claims).
-- progress_done / progress_total / progress_note are what the command last reported; result is
-- JSON (what it produced: an experiment id, a model id, metrics); error says why it failed. All
-- times are unix seconds.

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT   NOT NULL CHECK (kind IN ('backtest', 'evolve', 'train')),
    spec             TEXT   NOT NULL,
    state            TEXT   NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    created_by       TEXT   NOT NULL,
    created_by_id    BIGINT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    heartbeat_at     BIGINT,
    runner           TEXT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    cancel_requested BIGINT NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    progress_done    BIGINT NOT NULL DEFAULT 0,
    progress_total   BIGINT NOT NULL DEFAULT 0,
    progress_note    TEXT,
    exit_code        BIGINT,
    error            TEXT,
    result           TEXT
);

CREATE INDEX jobs_state ON jobs (state, id);
