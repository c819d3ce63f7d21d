-- Whether a task was moved back from the dead tasks since dispatch (`dead retry`): its attempts
-- start over, and the worker's trace links to the dispatch instead of continuing it. A constant
-- default: adding the column rewrites no row.
ALTER TABLE {tasks} ADD COLUMN IF NOT EXISTS replayed BOOLEAN NOT NULL DEFAULT FALSE;
