-- Unique keys (`asynctasq_core::unique`): which task holds each key of a queue, until when
-- (`hold`: until 0 its first lease, 1 done, 2 the expiry alone). Written by the enqueue that takes
-- the key, in its transaction; read under a row lock, and taken over once its owner no longer
-- holds it, by the next enqueue of the key; deleted by the sweep once expired. Binary
-- collation: keys differing only in case are different keys.
CREATE TABLE IF NOT EXISTS {unique} (
    queue      VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    unique_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    owner      BINARY(16)   NOT NULL,
    hold       SMALLINT     NOT NULL,
    expires_at BIGINT       NOT NULL,
    PRIMARY KEY (queue, unique_key),
    KEY {unique_expiry} (expires_at)
) ENGINE = InnoDB;
