-- Queues' limits (`queue limit`): `max_leased` caps the queue's live leases, counted by every
-- claim in its own write transaction. A row while a limit is set, none once cleared.
CREATE TABLE IF NOT EXISTS asynctasq_limits (queue TEXT PRIMARY KEY, max_leased INTEGER) WITHOUT ROWID;
