-- Cancellation. `cancel` is 0 until a cancel is requested while the task is leased; then it is
-- how long (ms, at least 1) the task's cancelled record is kept. Claims skip a flagged task,
-- its lease extension reports the cancel, and the sweep settles it as cancelled once no lease
-- holds it (the lease ran out, or it was nacked or released). MySQL has no partial index: the
-- sweep finds flagged rows by an index on `cancel` alone, which claims and lease extensions
-- (they change `visible_at`) never write. Constant defaults: added without copying the table.
ALTER TABLE {tasks} ADD COLUMN cancel BIGINT NOT NULL DEFAULT 0, ADD KEY {tasks_cancelled} (cancel);

-- How a kept task ended: 'succeeded' or 'cancelled'.
ALTER TABLE {results} ADD COLUMN state VARCHAR(16) NOT NULL DEFAULT 'succeeded';
