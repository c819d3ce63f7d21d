-- Every failed attempt's error, in order: a JSON array of {"attempt", "at", "error"}, appended
-- by each nack with an error and by the dead letter (`jsonb ||`, in the same statement); NULL
-- until the first failure. A dead task keeps it, a replayed one takes it back.
ALTER TABLE {tasks} ADD COLUMN IF NOT EXISTS errors TEXT;
ALTER TABLE {dead} ADD COLUMN IF NOT EXISTS errors TEXT;
