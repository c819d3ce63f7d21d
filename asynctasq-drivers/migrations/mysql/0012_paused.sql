-- Paused queues (`queue pause`): a claim of one takes nothing and the wait for the next due
-- task leaves it out, whichever process asks. A row while paused, none once resumed.
CREATE TABLE IF NOT EXISTS {paused} (queue VARCHAR(128) NOT NULL PRIMARY KEY) ENGINE = InnoDB;
