-- Delete every dead task.
local ids = redis.call('ZRANGE', DEAD, 0, -1)
forget(ids)
redis.call('DEL', DEAD, DEAD_EXPIRY)
return #ids
