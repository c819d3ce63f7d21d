-- When each dead task expires: the dead letter's time to live (the task's failure TTL) from its
-- death. Swept by the driver's own claims, with the kept results (at most once a second, by
-- this index). NULL for tasks dead-lettered before this migration: kept until purged.
ALTER TABLE {dead} ADD COLUMN expires_at BIGINT NULL, ADD KEY {dead_expiry} (expires_at);
