-- Return a leased task to waiting (nack with delay, or release). 0 when the lease was lost.
-- KEYS: waiting, leased, wake. ARGV: task key prefix, id, token, visible_at, error ('' for none),
-- '1' to take back the delivery's attempt (release) or '0' (nack).
local key = ARGV[1] .. ARGV[2]
if redis.call('HGET', key, 'token') ~= ARGV[3] or not redis.call('ZSCORE', KEYS[2], ARGV[2]) then
  return 0
end
redis.call('HDEL', key, 'token')
if ARGV[5] ~= '' then
  redis.call('HSET', key, 'last_error', ARGV[5])
end
if ARGV[6] == '1' then
  redis.call('HINCRBY', key, 'attempt', -1)
end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
redis.call('LPUSH', KEYS[3], 1)
redis.call('LTRIM', KEYS[3], 0, 15)
return 1
