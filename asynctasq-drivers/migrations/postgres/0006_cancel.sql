-- Cancellation. `cancel` is 0 until a cancel is requested while the task is leased; then it is
-- how long (ms, at least 1) the task's cancelled record is kept. Claims skip a flagged task,
-- its lease extension reports the cancel, and the sweep settles it as cancelled once no lease
-- holds it (the lease ran out, or it was nacked or released). The partial index holds only
-- flagged rows, so the sweep finds them without a scan and other rows pay nothing for it. A
-- constant default: the column is added without rewriting the table.
ALTER TABLE {tasks} ADD COLUMN IF NOT EXISTS cancel BIGINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS {tasks_cancelled} ON {tasks} (visible_at) WHERE cancel > 0;

-- How a kept task ended: 'succeeded' or 'cancelled'.
ALTER TABLE {results} ADD COLUMN IF NOT EXISTS state TEXT NOT NULL DEFAULT 'succeeded';
