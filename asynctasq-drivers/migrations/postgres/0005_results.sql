-- Succeeded tasks kept with their results until `expires_at` (the ack's time to live), for
-- `find` and waiters. Written by the ack statement that deletes the live row; swept by the
-- driver's own claims once they expire (at most once a second, by the expiry index).
CREATE TABLE IF NOT EXISTS {results} (
    id          BYTEA   PRIMARY KEY,
    queue       TEXT    NOT NULL,
    envelope    BYTEA   NOT NULL,
    attempt     INTEGER NOT NULL,
    result      BYTEA,
    finished_at BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL
);
CREATE INDEX IF NOT EXISTS {results_expiry} ON {results} (expires_at);
