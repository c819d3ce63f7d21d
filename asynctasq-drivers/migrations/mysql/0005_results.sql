-- Succeeded tasks kept with their results until `expires_at` (the ack's time to live), for
-- `find` and waiters. Written in the ack's transaction; swept by the driver's own claims once
-- they expire (at most once a second, by the expiry index).
CREATE TABLE IF NOT EXISTS {results} (
    id          BINARY(16)   NOT NULL PRIMARY KEY,
    queue       VARCHAR(128) NOT NULL,
    envelope    LONGBLOB     NOT NULL,
    attempt     INT          NOT NULL,
    result      LONGBLOB     NULL,
    finished_at BIGINT       NOT NULL,
    expires_at  BIGINT       NOT NULL,
    KEY {results_expiry} (expires_at)
) ENGINE = InnoDB;
