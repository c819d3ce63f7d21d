-- Whether a task was moved back from the dead tasks since dispatch (`dead retry`): its attempts
-- start over, and the worker's trace links to the dispatch instead of continuing it.
ALTER TABLE asynctasq_tasks ADD COLUMN replayed INTEGER NOT NULL DEFAULT 0;
