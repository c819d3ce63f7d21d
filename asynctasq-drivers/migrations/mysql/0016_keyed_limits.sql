-- Caps per key and rates (`queue limit --per-key`, `--rate`): `per_key` caps the queue's live
-- leases per task key; at most `rate` starts in any `rate_window_ms`, for the queue or
-- (`rate_per_key`) per key, counted by every claim from the log of starts (see
-- `sql/mysql/limits.rs`).
ALTER TABLE {limits} ADD COLUMN per_key INTEGER NULL, ADD COLUMN rate BIGINT NULL, ADD COLUMN rate_window_ms BIGINT NULL,
    ADD COLUMN rate_per_key BOOLEAN NOT NULL DEFAULT FALSE;
-- Each task's key (`#[task(key = ..)]`), which a queue's per-key limits count by.
ALTER TABLE {tasks} ADD COLUMN limit_key VARCHAR(255) NULL;
-- A dead task keeps its key, so a retried one is limited by it again.
ALTER TABLE {dead} ADD COLUMN limit_key VARCHAR(255) NULL;
-- Keys with parked tasks: a task of a key without room is parked, its `visible_at` offset by
-- 2^50, until a claim finds its key has room again. Parked tasks are found through the due
-- index (past 2^50), so the tasks table has no index more to keep.
CREATE TABLE IF NOT EXISTS {parked} (queue VARCHAR(128) NOT NULL, limit_key VARCHAR(255) NOT NULL, PRIMARY KEY (queue, limit_key)) ENGINE = InnoDB;
-- The log of starts (see `asynctasq_core::limits`): one row per claim (per key it started, for
-- a rate per key; under '' for the whole queue), dropped a second after it left the window. A
-- queue-wide entry's `cum` is how many the log had counted before it (its times never go back).
CREATE TABLE IF NOT EXISTS {starts} (
    id        BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    queue     VARCHAR(128) NOT NULL,
    limit_key VARCHAR(255) NOT NULL,
    at        BIGINT       NOT NULL,
    n         BIGINT       NOT NULL,
    cum       BIGINT       NOT NULL DEFAULT 0,
    KEY {starts_at} (queue, limit_key, at, cum)
) ENGINE = InnoDB;
