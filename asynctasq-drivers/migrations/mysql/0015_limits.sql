-- Queues' limits (`queue limit`): `max_leased` caps the queue's live leases. A claim of a
-- limited queue locks its row, then counts the live leases in a statement of its own (see
-- `sql/mysql/limits.rs`). A row while a limit is set, none once cleared.
CREATE TABLE IF NOT EXISTS {limits} (queue VARCHAR(128) NOT NULL PRIMARY KEY, max_leased INTEGER) ENGINE = InnoDB;
