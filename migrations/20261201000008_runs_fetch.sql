-- What the fetch stage did in a run, beside the per-security `details`: securities skipped
-- because the run stopped sending (Yahoo throttled it, or the request budget was spent), the
-- bars validation dropped, by reason, summed over the run, and the requests sent against the
-- budget with the throttle's pauses (and why it stopped, when to retry).
ALTER TABLE runs ADD COLUMN securities_skipped INT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN dropped JSONB NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE runs ADD COLUMN requests JSONB NOT NULL DEFAULT '{}'::jsonb;
