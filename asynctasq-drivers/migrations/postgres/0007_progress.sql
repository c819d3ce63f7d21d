-- The latest progress a running task reported (`ctx.progress`), written under its lease and
-- read by `find`; NULL until it reports. No default: added without rewriting the table.
ALTER TABLE {tasks} ADD COLUMN IF NOT EXISTS progress BYTEA;
