-- Live tasks, one row from enqueue until ack or dead-letter. `visible_at` (Unix ms) is the due
-- time while a task waits and the lease expiry while it is leased, so every claimable task,
-- new, retried or orphaned by a crashed worker, is in one index range.
CREATE TABLE IF NOT EXISTS {tasks} (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          BYTEA   NOT NULL UNIQUE,
    queue       TEXT    NOT NULL,
    envelope    BYTEA   NOT NULL,
    attempt     INTEGER NOT NULL DEFAULT 0,
    lease_ms    BIGINT  NOT NULL,
    visible_at  BIGINT  NOT NULL,
    lease_token BIGINT,
    last_error  TEXT
);
CREATE INDEX IF NOT EXISTS {tasks_due} ON {tasks} (queue, visible_at, seq);

-- Dead tasks with the reason, until requeued or purged.
CREATE TABLE IF NOT EXISTS {dead} (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id       BYTEA   NOT NULL UNIQUE,
    queue    TEXT    NOT NULL,
    envelope BYTEA   NOT NULL,
    attempt  INTEGER NOT NULL,
    lease_ms BIGINT  NOT NULL,
    error    TEXT    NOT NULL,
    dead_at  BIGINT  NOT NULL
);
CREATE INDEX IF NOT EXISTS {dead_queue} ON {dead} (queue, seq);
