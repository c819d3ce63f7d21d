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
-- The claim of a queue capped on its live leases, in one call: each statement of a function
-- takes a snapshot of its own, so the count that follows the lock on the queue's limits row sees
-- every claim that held it before, in one round trip (see `sql/postgres/limits.rs`). A row with
-- `seq` -1 says the queue has no limits (any more), -2 that it has a cap per key, which the
-- driver's keyed claim takes. `p_low` is the queue's claim cursor (`ClaimCursors`): the due
-- index's head holds the dead entries of claimed tasks until vacuum, which a claim from the
-- head would read every time.
CREATE OR REPLACE FUNCTION {claim_capped}(p_token BIGINT, p_now BIGINT, p_queue TEXT, p_max BIGINT, p_holder TEXT, p_low BIGINT)
RETURNS TABLE (seq BIGINT, id BYTEA, envelope BYTEA, attempt INTEGER, visible_at BIGINT, due BIGINT, replayed BOOLEAN, cancel BIGINT)
LANGUAGE plpgsql SET enable_bitmapscan = off AS $$
#variable_conflict use_column
DECLARE
    v_cap INTEGER;
    v_per_key INTEGER;
    v_room BIGINT;
BEGIN
    SELECT l.max_leased, l.per_key INTO v_cap, v_per_key FROM {limits} AS l WHERE l.queue = p_queue FOR UPDATE;
    IF NOT FOUND OR (v_cap IS NULL AND v_per_key IS NULL) THEN
        seq := -1;
        RETURN NEXT;
        RETURN;
    END IF;
    IF v_per_key IS NOT NULL THEN
        seq := -2;
        RETURN NEXT;
        RETURN;
    END IF;
    DELETE FROM {held} AS h WHERE h.queue = p_queue AND NOT EXISTS
        (SELECT 1 FROM {tasks} AS t WHERE t.seq = h.seq AND t.lease_token = h.token AND t.visible_at > p_now);
    SELECT GREATEST(0, LEAST(p_max, v_cap - COUNT(*))) INTO v_room FROM {held} AS h WHERE h.queue = p_queue;
    RETURN QUERY
    WITH c AS (SELECT t.seq, t.visible_at FROM {tasks} AS t WHERE t.queue = p_queue AND t.visible_at >= p_low AND t.visible_at <= p_now
               AND NOT EXISTS (SELECT 1 FROM {paused} AS p WHERE p.queue = p_queue)
               ORDER BY t.visible_at, t.seq LIMIT v_room FOR UPDATE SKIP LOCKED),
         u AS (UPDATE {tasks} AS t SET attempt = t.attempt + 1, lease_token = p_token, visible_at = p_now + t.lease_ms,
                      holder = p_holder, started_at = p_now
               FROM c WHERE t.seq = c.seq
               RETURNING t.seq, t.id, t.envelope, t.attempt, t.visible_at, c.visible_at AS due, t.replayed, t.cancel, t.limit_key),
         h AS (INSERT INTO {held} (queue, seq, token, limit_key) SELECT p_queue, u.seq, p_token, u.limit_key FROM u
               ON CONFLICT (queue, seq) DO UPDATE SET token = EXCLUDED.token)
    SELECT u.seq, u.id, u.envelope, u.attempt, u.visible_at, u.due, u.replayed, u.cancel FROM u;
END
$$;
