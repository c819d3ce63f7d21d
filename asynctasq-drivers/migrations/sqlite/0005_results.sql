-- Succeeded tasks kept with their results until `expires_at` (the ack's time to live), for
-- `find` and waiters; swept by the driver's own claims once they expire (at most once a second,
-- by the expiry index). Keyed by id alone (no rowid): one b-tree fewer to write per ack.
CREATE TABLE IF NOT EXISTS asynctasq_results (
    id          BLOB    PRIMARY KEY,
    queue       TEXT    NOT NULL,
    envelope    BLOB    NOT NULL,
    attempt     INTEGER NOT NULL,
    result      BLOB,
    finished_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS asynctasq_results_expiry ON asynctasq_results (expires_at);

-- An ack that keeps its tasks is one INSERT of their records: each live row goes with its
-- record, in the same statement (and is counted by `asynctasq_tasks_settled`). One statement,
-- not a transaction of two: SQLite has one writer, and each statement is a round trip to it.
CREATE TRIGGER IF NOT EXISTS asynctasq_results_kept AFTER INSERT ON asynctasq_results
BEGIN
    DELETE FROM asynctasq_tasks WHERE id = NEW.id;
END;
