-- Every failed attempt's error, in order: a JSON array of {"attempt", "at", "error"}, appended
-- by each nack with an error and by the dead letter (`JSON_ARRAY_APPEND`, in the same
-- statement); NULL until the first failure. A dead task keeps it, a replayed one takes it back.
ALTER TABLE {tasks} ADD COLUMN errors LONGTEXT NULL;
ALTER TABLE {dead} ADD COLUMN errors LONGTEXT NULL;
