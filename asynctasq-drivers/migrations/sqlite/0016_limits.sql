-- Queues' limits (`queue limit`): `max_leased` caps the queue's live leases and `per_key` its
-- live leases per task key, both counted by every claim in its own write transaction. A row
-- while a limit is set, none once cleared.
CREATE TABLE IF NOT EXISTS asynctasq_limits (queue TEXT PRIMARY KEY, max_leased INTEGER, per_key INTEGER) WITHOUT ROWID;
-- Each task's key (`#[task(key = ..)]`), which a queue's per-key limit counts by.
ALTER TABLE asynctasq_tasks ADD COLUMN limit_key TEXT;
-- Keys with parked tasks (see `sql/sqlite/limits.rs`): a task of a key at its limit is parked,
-- its `visible_at` offset by 2^50, until a claim finds its key has room again.
CREATE TABLE IF NOT EXISTS asynctasq_parked (queue TEXT NOT NULL, limit_key TEXT NOT NULL, PRIMARY KEY (queue, limit_key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS asynctasq_tasks_parked ON asynctasq_tasks (queue, limit_key, seq)
    WHERE visible_at >= 1125899906842624 AND visible_at < 4611686018427387904;
