-- Settled tasks per queue and day (Unix ms / 86,400,000), written by the transaction of each
-- ack batch and dead letter; `queue status` sums them. Concurrent acks of one queue would queue
-- up on one counter row's lock until commit, so each write picks one of 16 shards at random.
CREATE TABLE IF NOT EXISTS {totals} (
    queue     VARCHAR(128) NOT NULL,
    day       BIGINT       NOT NULL,
    shard     SMALLINT     NOT NULL,
    succeeded BIGINT       NOT NULL DEFAULT 0,
    failed    BIGINT       NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, day, shard)
);
