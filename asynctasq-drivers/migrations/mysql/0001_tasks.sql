-- Live tasks (see the PostgreSQL schema for the meaning of each column).
CREATE TABLE IF NOT EXISTS {tasks} (
    seq         BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    id          BINARY(16)   NOT NULL UNIQUE,
    queue       VARCHAR(128) NOT NULL,
    envelope    LONGBLOB     NOT NULL,
    attempt     INT          NOT NULL DEFAULT 0,
    lease_ms    BIGINT       NOT NULL,
    visible_at  BIGINT       NOT NULL,
    lease_token BIGINT       NULL,
    last_error  TEXT         NULL,
    KEY {tasks_due} (queue, visible_at, seq)
) ENGINE = InnoDB;

-- Dead tasks with the reason.
CREATE TABLE IF NOT EXISTS {dead} (
    seq      BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    id       BINARY(16)   NOT NULL UNIQUE,
    queue    VARCHAR(128) NOT NULL,
    envelope LONGBLOB     NOT NULL,
    attempt  INT          NOT NULL,
    lease_ms BIGINT       NOT NULL,
    error    TEXT         NOT NULL,
    dead_at  BIGINT       NOT NULL,
    KEY {dead_queue} (queue, seq)
) ENGINE = InnoDB;
