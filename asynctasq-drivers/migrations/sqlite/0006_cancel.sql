-- Cancellation. `cancel` is 0 until a cancel is requested while the task is leased; then it is
-- how long (ms, at least 1) the task's cancelled record is kept. Claims skip a flagged task,
-- its lease extension reports the cancel, and the sweep settles it as cancelled once no lease
-- holds it (the lease ran out, or it was nacked or released). The partial index holds only
-- flagged rows, so the sweep finds them without a scan and other rows pay nothing for it.
ALTER TABLE asynctasq_tasks ADD COLUMN cancel INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS asynctasq_tasks_cancelled ON asynctasq_tasks (visible_at) WHERE cancel > 0;

-- How a kept task ended: 'succeeded' or 'cancelled'.
ALTER TABLE asynctasq_results ADD COLUMN state TEXT NOT NULL DEFAULT 'succeeded';

-- A cancelled task is settled, but it neither succeeded nor failed: the totals leave it out.
-- A flagged task acked by its worker (it finished within its grace) still counts as succeeded.
DROP TRIGGER IF EXISTS asynctasq_tasks_settled;
CREATE TRIGGER asynctasq_tasks_settled AFTER DELETE ON asynctasq_tasks
WHEN OLD.lease_token IS NOT NULL
 AND (OLD.cancel = 0 OR NOT EXISTS (SELECT 1 FROM asynctasq_results WHERE id = OLD.id AND state = 'cancelled'))
BEGIN
    INSERT INTO asynctasq_totals (queue, day, succeeded, failed)
    SELECT OLD.queue, unixepoch() / 86400, 1 - dead, dead
    FROM (SELECT EXISTS (SELECT 1 FROM asynctasq_dead WHERE id = OLD.id) AS dead) WHERE true
    ON CONFLICT (queue, day) DO UPDATE SET succeeded = succeeded + excluded.succeeded, failed = failed + excluded.failed;
END;
