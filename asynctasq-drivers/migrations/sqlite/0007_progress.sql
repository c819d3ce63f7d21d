-- The latest progress a running task reported (`ctx.progress`), written under its lease and
-- read by `find`; NULL until it reports.
ALTER TABLE asynctasq_tasks ADD COLUMN progress BLOB;
