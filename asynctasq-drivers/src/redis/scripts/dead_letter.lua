-- Move a leased task to the dead set, then apply retention. 0 when the lease was lost.
-- KEYS: leased, dead. ARGV: task key prefix, id, token, error, now, max dead count, oldest dead_at kept.
local key = ARGV[1] .. ARGV[2]
if redis.call('HGET', key, 'token') ~= ARGV[3] or not redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  return 0
end
redis.call('HDEL', key, 'token')
redis.call('HSET', key, 'error', ARGV[4], 'dead_at', ARGV[5])
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[2])
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[7], 'LIMIT', 0, 1000)
for _, m in ipairs(old) do
  redis.call('DEL', ARGV[1] .. m)
  redis.call('ZREM', KEYS[2], m)
end
local n, max = redis.call('ZCARD', KEYS[2]), tonumber(ARGV[6])
if n > max then
  for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, n - max - 1)) do
    redis.call('DEL', ARGV[1] .. m)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - max - 1)
end
return 1
