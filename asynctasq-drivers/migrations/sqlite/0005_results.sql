-- Succeeded tasks kept with their results until `expires_at` (the ack's time to live), for
-- `find` and waiters. Written by the ack, in the transaction that deletes the live row; swept by
-- the driver's own calls once they expire (at most once a second, by the expiry index).
CREATE TABLE IF NOT EXISTS asynctasq_results (
    seq         INTEGER PRIMARY KEY,
    id          BLOB    NOT NULL UNIQUE,
    queue       TEXT    NOT NULL,
    envelope    BLOB    NOT NULL,
    attempt     INTEGER NOT NULL,
    result      BLOB,
    finished_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS asynctasq_results_expiry ON asynctasq_results (expires_at);
