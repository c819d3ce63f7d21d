-- Schedules (`asynctasq_core::schedule`): each one's latest claimed slot (Unix ms) and whether
-- it is paused. A claim advances `last_slot` only if it is older, in the transaction that
-- stores the slot's task.
CREATE TABLE IF NOT EXISTS {schedules} (
    name      VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    last_slot BIGINT       NULL,
    paused    TINYINT      NOT NULL DEFAULT 0
) ENGINE = InnoDB;
