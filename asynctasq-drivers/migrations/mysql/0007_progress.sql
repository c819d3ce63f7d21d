-- The latest progress a running task reported (`ctx.progress`), written under its lease and
-- read by `find`; NULL until it reports. Added without copying the table.
ALTER TABLE {tasks} ADD COLUMN progress BLOB NULL;
