-- Every failed attempt's error, in order: a JSON array of {"attempt", "at", "error"}, appended
-- by each nack with an error and by the dead letter (SQLite's `json_insert`, in the same
-- statement); NULL until the first failure. A dead task keeps it, a replayed one takes it back.
ALTER TABLE asynctasq_tasks ADD COLUMN errors TEXT;
ALTER TABLE asynctasq_dead ADD COLUMN errors TEXT;
