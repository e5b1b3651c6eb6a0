-- A run killed by SIGKILL, or whose database died under it, cannot record its end: its row
-- stays 'running'. The next run that takes the same lock marks it 'abandoned' (with a
-- finished_at), so `runs`, /status and /metrics stop counting it as in progress.
-- `lock_key` is the advisory lock the run held (the unsharded run's or a shard's): a
-- 'running' row whose lock nobody holds is an orphan. Rows from before this migration have
-- none and are treated as the unsharded run's.
ALTER TABLE runs DROP CONSTRAINT IF EXISTS runs_outcome_check;
ALTER TABLE runs ADD CONSTRAINT runs_outcome_check
    CHECK (outcome IN ('running', 'succeeded', 'partial', 'failed', 'interrupted', 'abandoned'));
ALTER TABLE runs ADD COLUMN lock_key BIGINT;
CREATE INDEX runs_running_idx ON runs (outcome) WHERE outcome = 'running';
