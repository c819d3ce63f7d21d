-- Settled tasks per queue and day (Unix ms / 86,400,000), written by the transaction of each
-- ack batch and dead letter; `queue status` sums them. One writer at a time, so one row each.
CREATE TABLE IF NOT EXISTS asynctasq_totals (
    queue     TEXT    NOT NULL,
    day       INTEGER NOT NULL,
    succeeded INTEGER NOT NULL DEFAULT 0,
    failed    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, day)
) WITHOUT ROWID;
