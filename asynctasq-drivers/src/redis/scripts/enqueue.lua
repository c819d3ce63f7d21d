-- Store tasks of one queue and wake waiting workers.
-- KEYS: waiting, wake. ARGV: task key prefix, then (id, envelope, lease_ms, not_before) per task.
local n = 0
for i = 2, #ARGV, 4 do
  redis.call('HSET', ARGV[1] .. ARGV[i], 'env', ARGV[i + 1], 'attempt', 0, 'lease_ms', ARGV[i + 2])
  redis.call('ZADD', KEYS[1], ARGV[i + 3], ARGV[i])
  n = n + 1
end
for _ = 1, math.min(n, 16) do
  redis.call('LPUSH', KEYS[2], 1)
end
redis.call('LTRIM', KEYS[2], 0, 15)
return n
