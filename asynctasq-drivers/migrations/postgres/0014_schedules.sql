-- Schedules (`asynctasq_core::schedule`): each one's latest claimed slot (Unix ms) and whether
-- it is paused. A claim advances `last_slot` only if it is older, in the transaction that
-- stores the slot's task.
CREATE TABLE IF NOT EXISTS {schedules} (
    name      TEXT    PRIMARY KEY,
    last_slot BIGINT,
    paused    BOOLEAN NOT NULL DEFAULT FALSE
);
