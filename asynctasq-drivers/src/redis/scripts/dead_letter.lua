-- Move a leased task to the dead set and count it in the totals, then apply retention. 0 when the lease was lost.
-- ARGV: id, token, error, now, max dead count, oldest dead_at kept, when it expires.
-- A task flagged by a cancel ends cancelled instead.
local id = ARGV[1]
if not holds(id, ARGV[2]) then return 0 end
local keep = redis.call('HGET', CANCEL, id)
if keep then
  cancelled(id, tonumber(ARGV[4]), tonumber(keep))
  return 1
end
redis.call('HSET', ERROR, id, ARGV[3])
record_error(id, tonumber(ARGV[4]), ARGV[3])
-- The token stays with the dead task (no lease: `holds` needs one), for when its run started.
redis.call('ZREM', LEASED, id)
redis.call('ZADD', DEAD, ARGV[4], id)
redis.call('ZADD', DEAD_EXPIRY, ARGV[7], id)
redis.call('HINCRBY', TOTALS, 'failed', 1)
redis.call('PUBLISH', NOTICES, 's:' .. id)
local old = redis.call('ZRANGEBYSCORE', DEAD, '-inf', '(' .. ARGV[6], 'LIMIT', 0, 1000)
local n, max = redis.call('ZCARD', DEAD) - #old, tonumber(ARGV[5])
if n > max then
  for _, m in ipairs(redis.call('ZRANGE', DEAD, #old, #old + n - max - 1)) do
    old[#old + 1] = m
  end
end
bury(old)
return 1
