-- Lease up to N due tasks of one queue.
-- KEYS: waiting, leased. ARGV: now, max, token, task key prefix, fallback lease_ms.
-- Expired leases (crashed or stalled workers) go back to waiting first, due at their expiry, so
-- recovery needs no separate reaper process.
local now = tonumber(ARGV[1])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1000)
for i = 1, #expired, 2 do
  redis.call('ZADD', KEYS[1], expired[i + 1], expired[i])
  redis.call('ZREM', KEYS[2], expired[i])
end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local key = ARGV[4] .. id
  local lease = tonumber(redis.call('HGET', key, 'lease_ms')) or tonumber(ARGV[5])
  local attempt = redis.call('HINCRBY', key, 'attempt', 1)
  redis.call('HSET', key, 'token', ARGV[3])
  local expires = now + lease
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], expires, id)
  out[#out + 1] = id
  out[#out + 1] = attempt
  out[#out + 1] = expires
  out[#out + 1] = redis.call('HGET', key, 'env')
end
return out
