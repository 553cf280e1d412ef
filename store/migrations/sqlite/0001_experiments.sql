-- dexlab experiment store, SQLite dialect. Keep in step with ../postgres/0001_experiments.sql:
-- same tables, columns and keys.
--
-- f64 columns are declared without a type on purpose: a REAL column turns -0.0 into 0.0 (SQLite
-- stores integral reals as integers), an untyped one keeps the exact bits. The CHECKs keep them
-- real. JSON payloads are TEXT; u64 seeds are decimal TEXT (they can exceed i64).

CREATE TABLE experiments (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL,
    strategy     TEXT    NOT NULL,
    dataset      TEXT    NOT NULL,
    dataset_hash TEXT    NOT NULL,
    config       TEXT    NOT NULL,
    seed         TEXT    NOT NULL,
    status       TEXT    NOT NULL DEFAULT 'running',
    summary      TEXT,
    created_at   BIGINT  NOT NULL
);
CREATE INDEX experiments_by_name ON experiments (name, created_at, id);

CREATE TABLE folds (
    experiment_id BIGINT  NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    fold          INTEGER NOT NULL,
    train_from    BIGINT  NOT NULL,
    train_to      BIGINT  NOT NULL,
    test_from     BIGINT  NOT NULL,
    test_to       BIGINT  NOT NULL,
    PRIMARY KEY (experiment_id, fold)
);

CREATE TABLE runs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    experiment_id   BIGINT  NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    fold            INTEGER NOT NULL,
    kind            TEXT    NOT NULL,
    params          TEXT    NOT NULL,
    train_objective CHECK (train_objective IS NULL OR typeof(train_objective) = 'real'),
    test_objective  CHECK (test_objective IS NULL OR typeof(test_objective) = 'real')
);
CREATE INDEX runs_by_experiment ON runs (experiment_id, fold, kind);

CREATE TABLE generations (
    run_id      BIGINT  NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    generation  INTEGER NOT NULL,
    best        NOT NULL CHECK (typeof(best) = 'real'),
    mean        NOT NULL CHECK (typeof(mean) = 'real'),
    worst       NOT NULL CHECK (typeof(worst) = 'real'),
    evaluations BIGINT  NOT NULL,
    PRIMARY KEY (run_id, generation)
);

CREATE TABLE individuals (
    run_id     BIGINT  NOT NULL,
    generation INTEGER NOT NULL,
    idx        INTEGER NOT NULL,
    params     TEXT    NOT NULL,
    fitness    NOT NULL CHECK (typeof(fitness) = 'real'),
    PRIMARY KEY (run_id, generation, idx),
    FOREIGN KEY (run_id, generation) REFERENCES generations (run_id, generation) ON DELETE CASCADE
);

CREATE TABLE metrics (
    run_id      BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    window_name TEXT   NOT NULL,
    metrics     TEXT   NOT NULL,
    PRIMARY KEY (run_id, window_name)
);

-- points: JSON [[block, equity], ...], one row per (run, window).
CREATE TABLE equity_curves (
    run_id      BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    window_name TEXT   NOT NULL,
    points      TEXT   NOT NULL,
    PRIMARY KEY (run_id, window_name)
);
