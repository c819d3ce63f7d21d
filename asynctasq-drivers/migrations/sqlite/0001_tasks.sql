-- Live tasks. One row per task from enqueue until ack or dead-letter.
-- `visible_at` is the due time while a task waits and the lease expiry while it is leased, so
-- "ready" is one index range (queue, visible_at <= now) whether the task is new, retried or
-- its worker died.
CREATE TABLE IF NOT EXISTS asynctasq_tasks (
    seq         INTEGER PRIMARY KEY,
    id          BLOB    NOT NULL UNIQUE,
    queue       TEXT    NOT NULL,
    envelope    BLOB    NOT NULL,
    attempt     INTEGER NOT NULL DEFAULT 0,
    lease_ms    INTEGER NOT NULL,
    visible_at  INTEGER NOT NULL,
    lease_token INTEGER,
    last_error  TEXT
);
CREATE INDEX IF NOT EXISTS asynctasq_tasks_due ON asynctasq_tasks (queue, visible_at, seq);

-- Dead tasks, kept with the error until requeued or purged.
CREATE TABLE IF NOT EXISTS asynctasq_dead (
    seq       INTEGER PRIMARY KEY,
    id        BLOB    NOT NULL UNIQUE,
    queue     TEXT    NOT NULL,
    envelope  BLOB    NOT NULL,
    attempt   INTEGER NOT NULL,
    lease_ms  INTEGER NOT NULL,
    error     TEXT    NOT NULL,
    dead_at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS asynctasq_dead_queue ON asynctasq_dead (queue, seq);
