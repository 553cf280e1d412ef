-- Every experiment ends in a state, and names are unique per store. Keep in step with the other
-- dialect's 0003_experiment_states.sql (this file is the same SQL in both).
--
-- error: why a run failed or stopped (status 'failed' or 'interrupted'); pid, host and
-- heartbeat_at: the process running it and when it last reported progress, so that a reader can
-- tell a live run from one whose process is gone.
--
-- Stores made before names were unique may hold several experiments of one name: the newest
-- (by created_at, then id, as find_experiment chose) keeps it, the older ones become NAME#ID.

UPDATE experiments
SET name = name || '#' || CAST(id AS TEXT)
WHERE EXISTS (
    SELECT 1 FROM experiments newer
    WHERE newer.name = experiments.name
      AND (newer.created_at > experiments.created_at
           OR (newer.created_at = experiments.created_at AND newer.id > experiments.id))
);

ALTER TABLE experiments ADD COLUMN error TEXT;
ALTER TABLE experiments ADD COLUMN pid BIGINT;
ALTER TABLE experiments ADD COLUMN host TEXT;
ALTER TABLE experiments ADD COLUMN heartbeat_at BIGINT;

DROP INDEX experiments_by_name;
CREATE UNIQUE INDEX experiments_name_unique ON experiments (name);
