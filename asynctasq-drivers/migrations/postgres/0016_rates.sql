-- Queues' rates (`queue limit --rate`): at most `rate` starts in any `rate_window_ms`, for the
-- queue or (`rate_per_key`) per task key, counted by every claim from the log of starts.
ALTER TABLE {limits} ADD COLUMN IF NOT EXISTS rate BIGINT;
ALTER TABLE {limits} ADD COLUMN IF NOT EXISTS rate_window_ms BIGINT;
ALTER TABLE {limits} ADD COLUMN IF NOT EXISTS rate_per_key BOOLEAN NOT NULL DEFAULT false;
-- A dead task keeps its key, so a retried one is limited by it again.
ALTER TABLE {dead} ADD COLUMN IF NOT EXISTS limit_key TEXT;
-- The log of starts (see `asynctasq_core::limits`): one row per claim (per key it started, for
-- a rate per key; under '' for the whole queue), dropped a second after it left the window.
-- A queue-wide entry's `cum` is how many the log had counted before it (its times never go
-- back), so a claim counts a window from two entries, whatever the window holds.
CREATE TABLE IF NOT EXISTS {starts} (queue TEXT NOT NULL, limit_key TEXT NOT NULL, at BIGINT NOT NULL, n BIGINT NOT NULL, cum BIGINT NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS {starts_at} ON {starts} (queue, limit_key, at, cum);
-- The capped claim of migration 15, now also for a queue-wide rate: the starts of the window
-- counted from the log (pruned of what left it over a second ago) under the same row lock, and
-- the claim's own starts logged in one row. A cap per key or a rate per key is left to the
-- driver's counted claim (`seq` -2). Leases are recorded in `held` only under a cap.
CREATE OR REPLACE FUNCTION {claim_capped}(p_token BIGINT, p_now BIGINT, p_queue TEXT, p_max BIGINT, p_holder TEXT, p_low BIGINT)
RETURNS TABLE (seq BIGINT, id BYTEA, envelope BYTEA, attempt INTEGER, visible_at BIGINT, due BIGINT, replayed BOOLEAN, cancel BIGINT)
LANGUAGE plpgsql SET enable_bitmapscan = off AS $$
#variable_conflict use_column
DECLARE
    v_cap INTEGER;
    v_per_key INTEGER;
    v_rate BIGINT;
    v_window BIGINT;
    v_rate_per_key BOOLEAN;
    v_room BIGINT := p_max;
    v_last_at BIGINT;
    v_after BIGINT;
    v_first BIGINT;
BEGIN
    SELECT l.max_leased, l.per_key, l.rate, l.rate_window_ms, l.rate_per_key INTO v_cap, v_per_key, v_rate, v_window, v_rate_per_key
        FROM {limits} AS l WHERE l.queue = p_queue FOR UPDATE;
    IF NOT FOUND OR (v_cap IS NULL AND v_per_key IS NULL AND v_rate IS NULL) THEN
        seq := -1;
        RETURN NEXT;
        RETURN;
    END IF;
    IF v_per_key IS NOT NULL OR (v_rate IS NOT NULL AND v_rate_per_key) THEN
        seq := -2;
        RETURN NEXT;
        RETURN;
    END IF;
    IF v_cap IS NOT NULL THEN
        DELETE FROM {held} AS h WHERE h.queue = p_queue AND NOT EXISTS
            (SELECT 1 FROM {tasks} AS t WHERE t.seq = h.seq AND t.lease_token = h.token AND t.visible_at > p_now);
        SELECT GREATEST(0, LEAST(v_room, v_cap - COUNT(*))) INTO v_room FROM {held} AS h WHERE h.queue = p_queue;
    END IF;
    IF v_rate IS NOT NULL THEN
        DELETE FROM {starts} AS s WHERE s.queue = p_queue AND s.limit_key = '' AND s.at <= p_now - v_window - 1000;
        SELECT s.at, s.cum + s.n INTO v_last_at, v_after FROM {starts} AS s
            WHERE s.queue = p_queue AND s.limit_key = '' ORDER BY s.at DESC, s.cum DESC LIMIT 1;
        SELECT s.cum INTO v_first FROM {starts} AS s
            WHERE s.queue = p_queue AND s.limit_key = '' AND s.at > p_now - v_window ORDER BY s.at, s.cum LIMIT 1;
        v_room := GREATEST(0, LEAST(v_room, v_rate - COALESCE(v_after - v_first, 0)));
    END IF;
    RETURN QUERY
    WITH c AS (SELECT t.seq, t.visible_at FROM {tasks} AS t WHERE t.queue = p_queue AND t.visible_at >= p_low AND t.visible_at <= p_now
               AND NOT EXISTS (SELECT 1 FROM {paused} AS p WHERE p.queue = p_queue)
               ORDER BY t.visible_at, t.seq LIMIT v_room FOR UPDATE SKIP LOCKED),
         u AS (UPDATE {tasks} AS t SET attempt = t.attempt + 1, lease_token = p_token, visible_at = p_now + t.lease_ms,
                      holder = p_holder, started_at = p_now
               FROM c WHERE t.seq = c.seq
               RETURNING t.seq, t.id, t.envelope, t.attempt, t.visible_at, c.visible_at AS due, t.replayed, t.cancel, t.limit_key),
         h AS (INSERT INTO {held} (queue, seq, token, limit_key) SELECT p_queue, u.seq, p_token, u.limit_key FROM u
               WHERE v_cap IS NOT NULL ON CONFLICT (queue, seq) DO UPDATE SET token = EXCLUDED.token),
         s AS (INSERT INTO {starts} (queue, limit_key, at, n, cum)
               SELECT p_queue, '', GREATEST(p_now, COALESCE(v_last_at, p_now)), COUNT(*), COALESCE(v_after, 0) FROM u
               WHERE v_rate IS NOT NULL HAVING COUNT(*) > 0)
    SELECT u.seq, u.id, u.envelope, u.attempt, u.visible_at, u.due, u.replayed, u.cancel FROM u;
END
$$;
