-- When each dead task expires: the dead letter's time to live (the task's failure TTL) from its
-- death. Swept by the driver's own claims, with the kept results (at most once a second, by
-- this index). NULL for tasks dead-lettered before this migration: kept until purged.
ALTER TABLE {dead} ADD COLUMN IF NOT EXISTS expires_at BIGINT;
CREATE INDEX IF NOT EXISTS {dead_expiry} ON {dead} (expires_at);
