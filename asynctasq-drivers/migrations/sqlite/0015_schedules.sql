-- Schedules (`asynctasq_core::schedule`): each one's latest claimed slot (Unix ms) and whether
-- it is paused. A claim advances `last_slot` only if it is older, in the transaction that
-- stores the slot's task.
CREATE TABLE IF NOT EXISTS asynctasq_schedules (
    name      TEXT    PRIMARY KEY,
    last_slot INTEGER,
    paused    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
