-- The consumer (a worker's id) each live task's latest claim was for: the lease holder that
-- `find` reports while the task is leased, and the worker each failure's history entry names.
-- Written by the claim's own UPDATE. NULL until the first claim, or when the handle is unnamed.
ALTER TABLE {tasks} ADD COLUMN IF NOT EXISTS holder TEXT;
