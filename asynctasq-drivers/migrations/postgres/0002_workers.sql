-- The worker registry: one row per running worker, rewritten on each heartbeat, deleted when
-- it stops; a row past `expires_at` is a crashed worker and is not listed.
CREATE TABLE IF NOT EXISTS {workers} (
    id         TEXT   PRIMARY KEY,
    expires_at BIGINT NOT NULL,
    info       BYTEA  NOT NULL
);
