-- Queues' limits (`queue limit`): `max_leased` caps the queue's live leases and `per_key` its
-- live leases per task key. A claim of a limited queue locks its row, then counts the live
-- leases in a statement of its own (see `sql/postgres/limits.rs`). A row while a limit is set,
-- none once cleared.
CREATE TABLE IF NOT EXISTS {limits} (queue TEXT PRIMARY KEY, max_leased INTEGER, per_key INTEGER);
-- Each task's key (`#[task(key = ..)]`), which a queue's per-key limit counts by.
ALTER TABLE {tasks} ADD COLUMN IF NOT EXISTS limit_key TEXT;
-- Keys with parked tasks: a task of a key at its limit is parked, its `visible_at` offset by
-- 2^50, until a claim finds its key has room again.
CREATE TABLE IF NOT EXISTS {parked} (queue TEXT NOT NULL, limit_key TEXT NOT NULL, PRIMARY KEY (queue, limit_key));
CREATE INDEX IF NOT EXISTS {tasks_parked} ON {tasks} (queue, limit_key, seq) WHERE visible_at >= 1125899906842624;
-- The leases a limited queue's claims took, with their keys: what the claims count, instead of
-- the tasks table's leased rows, whose index range of the coming lease expiries also holds the
-- dead entries of every task acked within a lease (tens of thousands at full speed). Each
-- claim first deletes the ones whose lease ended (acked, retried, expired, taken over).
CREATE TABLE IF NOT EXISTS {held} (queue TEXT NOT NULL, seq BIGINT NOT NULL, token BIGINT NOT NULL, limit_key TEXT, PRIMARY KEY (queue, seq));
