-- Whether a task was moved back from the dead tasks since dispatch (`dead retry`): its attempts
-- start over, and the worker's trace links to the dispatch instead of continuing it. A constant
-- default: MySQL 8 and MariaDB add the column without copying the table.
ALTER TABLE {tasks} ADD COLUMN replayed BOOLEAN NOT NULL DEFAULT FALSE;
