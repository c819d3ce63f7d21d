-- A succeeded task is kept in its own row instead of moving to `asynctasq_results`: the ack
-- sets `result` and `kept_until` (when its time to live ends), clears the lease, and puts
-- `visible_at` at 2^62 + the ack's time, above every due time: no claim reaches it, the due
-- index orders a queue's kept tasks by when they finished, and the queue's live tasks are the
-- index range below 2^62. One row rewritten instead of one inserted and one deleted:
-- 0.89 of the plain ack's rate against 0.71 for the move (see BENCHMARKS.md).
-- Cancelled tasks, and records kept before this migration, stay in `asynctasq_results`.
ALTER TABLE asynctasq_tasks ADD COLUMN result BLOB;
ALTER TABLE asynctasq_tasks ADD COLUMN kept_until INTEGER;
CREATE INDEX IF NOT EXISTS asynctasq_tasks_kept ON asynctasq_tasks (kept_until) WHERE kept_until IS NOT NULL;

-- The keeping ack deletes nothing, so `asynctasq_tasks_settled` does not see it: this counts it.
CREATE TRIGGER IF NOT EXISTS asynctasq_tasks_kept AFTER UPDATE OF kept_until ON asynctasq_tasks
WHEN NEW.kept_until IS NOT NULL AND OLD.kept_until IS NULL
BEGIN
    INSERT INTO asynctasq_totals (queue, day, succeeded) VALUES (NEW.queue, unixepoch() / 86400, 1)
    ON CONFLICT (queue, day) DO UPDATE SET succeeded = succeeded + 1;
END;
