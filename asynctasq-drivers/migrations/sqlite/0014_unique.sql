-- Unique keys (`asynctasq_core::unique`): which task holds each key of a queue, until when
-- (`hold`: until 0 its first lease, 1 done, 2 the expiry alone). Written by the enqueue that takes
-- the key, in its transaction; read, and taken over once its owner no longer holds it, by the
-- next enqueue of the key; deleted by the sweep once expired.
CREATE TABLE IF NOT EXISTS asynctasq_unique (
    queue      TEXT    NOT NULL,
    unique_key TEXT    NOT NULL,
    owner      BLOB    NOT NULL,
    hold       INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (queue, unique_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS asynctasq_unique_expiry ON asynctasq_unique (expires_at);
