-- Queues' rates (`queue limit --rate`): at most `rate` starts in any `rate_window_ms`, for the
-- queue or (`rate_per_key`) per task key, counted by every claim from the log of starts.
ALTER TABLE asynctasq_limits ADD COLUMN rate INTEGER;
ALTER TABLE asynctasq_limits ADD COLUMN rate_window_ms INTEGER;
ALTER TABLE asynctasq_limits ADD COLUMN rate_per_key INTEGER NOT NULL DEFAULT 0;
-- The log of starts (see `asynctasq_core::limits`): one row per claim (per key it started, for
-- a rate per key; under '' for the whole queue), dropped a second after it left the window.
-- A queue-wide entry's `cum` is how many the log had counted before it (its times never go
-- back), so a claim counts a window from two entries, whatever the window holds.
CREATE TABLE IF NOT EXISTS asynctasq_starts (
    queue TEXT NOT NULL, limit_key TEXT NOT NULL, at INTEGER NOT NULL, n INTEGER NOT NULL, cum INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS asynctasq_starts_at ON asynctasq_starts (queue, limit_key, at, cum);
-- A dead task keeps its key, so a retried one is limited by it again.
ALTER TABLE asynctasq_dead ADD COLUMN limit_key TEXT;
