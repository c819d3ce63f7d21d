-- When each task's latest delivery was claimed (its run started): written by the claim's own
-- UPDATE, carried to the kept record or the dead task in the statement that moves it. NULL
-- before its first claim.
ALTER TABLE {tasks} ADD COLUMN started_at BIGINT NULL;
ALTER TABLE {dead} ADD COLUMN started_at BIGINT NULL;
ALTER TABLE {results} ADD COLUMN started_at BIGINT NULL;
