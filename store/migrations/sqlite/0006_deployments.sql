-- Promoted deployments and retired models, SQLite dialect. Keep in step with
-- ../postgres/0006_deployments.sql: same columns and keys.
--
-- A deployment is a name (what `dexlab live --deployment NAME` runs) with numbered versions:
-- promoting to a name adds version max + 1, and a rollback adds a version too, restoring an
-- earlier one's content (rollback_of names it). Rows are never deleted or changed: they are the
-- deployment's history. replaces is the version that was in force when the row was made (NULL
-- for a name's first version; for a rollback row, the version the restored one had replaced, so
-- that rolling back again walks further back). params, backtest (the experiment's execution
-- config), risk (the risk limits) and evidence (the out-of-sample figures and baselines the
-- promotion was judged on) are JSON (TEXT); forced is 0 or 1 (promoted although not better than
-- its baselines); created_at is unix seconds. The experiment and model are kept by id and by
-- name, and the model by content hash, so that a row stays readable on its own.
--
-- A retired model keeps its row (deployments refer to it) but may not be deployed again:
-- retired_at (unix seconds), retired_by and retired_reason are set once, NULL until then.

CREATE TABLE deployments (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT   NOT NULL,
    version         BIGINT NOT NULL,
    experiment_id   BIGINT REFERENCES experiments (id),
    experiment_name TEXT,
    fold            BIGINT,
    strategy        TEXT   NOT NULL,
    params          TEXT   NOT NULL,
    backtest        TEXT   NOT NULL,
    model_id        BIGINT REFERENCES models (id),
    model_name      TEXT,
    model_hash      TEXT,
    risk            TEXT   NOT NULL,
    evidence        TEXT   NOT NULL,
    forced          BIGINT NOT NULL CHECK (forced IN (0, 1)),
    replaces        BIGINT,
    rollback_of     BIGINT,
    dexlab_version  TEXT   NOT NULL,
    git_commit      TEXT   NOT NULL,
    created_by      TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    note            TEXT,
    UNIQUE (name, version)
);

ALTER TABLE models ADD COLUMN retired_at BIGINT;
ALTER TABLE models ADD COLUMN retired_by TEXT;
ALTER TABLE models ADD COLUMN retired_reason TEXT;
