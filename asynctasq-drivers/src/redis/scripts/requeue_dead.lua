-- Move dead tasks back to waiting, due now, attempts reset.
-- KEYS: dead, waiting, wake. ARGV: task key prefix, now, 'all' or 'ids', then ids.
local members = {}
if ARGV[3] == 'all' then
  members = redis.call('ZRANGE', KEYS[1], 0, -1)
else
  for i = 4, #ARGV do
    if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
      members[#members + 1] = ARGV[i]
    end
  end
end
for _, m in ipairs(members) do
  local key = ARGV[1] .. m
  redis.call('HSET', key, 'attempt', 0)
  redis.call('HDEL', key, 'error', 'dead_at', 'token')
  redis.call('ZREM', KEYS[1], m)
  redis.call('ZADD', KEYS[2], ARGV[2], m)
end
if #members > 0 then
  redis.call('LPUSH', KEYS[3], 1)
  redis.call('LTRIM', KEYS[3], 0, 15)
end
return #members
