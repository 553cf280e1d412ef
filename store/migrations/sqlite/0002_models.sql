-- dexlab model registry, SQLite dialect. Keep in step with ../postgres/0002_models.sql: same
-- columns and keys.
--
-- One row per trained model directory (written by dexlab-models or, later, the RL agents). A name
-- and a directory each belong to one model: registering the same name and directory again is a
-- no-op when the content hash matches and an error otherwise (see Store::register_model).
-- features, config, dataset, training and metrics are JSON (TEXT); the seed is decimal TEXT (a
-- u64). train_seconds is untyped for the exact bits, as in 0001_experiments.sql.

CREATE TABLE models (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL UNIQUE,
    kind          TEXT    NOT NULL,
    task          TEXT    NOT NULL,
    target        TEXT    NOT NULL,
    dir           TEXT    NOT NULL UNIQUE,
    content_hash  TEXT    NOT NULL,
    features      TEXT    NOT NULL,
    window_size   BIGINT  NOT NULL,
    seed          TEXT    NOT NULL,
    backend       TEXT    NOT NULL,
    dataset_hash  TEXT,
    git_commit    TEXT    NOT NULL,
    config        TEXT    NOT NULL,
    dataset       TEXT    NOT NULL,
    training      TEXT    NOT NULL,
    metrics       TEXT    NOT NULL,
    train_seconds CHECK (train_seconds IS NULL OR typeof(train_seconds) = 'real'),
    created_at    BIGINT  NOT NULL
);
