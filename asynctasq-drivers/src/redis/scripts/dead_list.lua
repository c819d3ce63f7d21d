-- The oldest dead tasks of a queue. KEYS: dead. ARGV: task key prefix, limit.
local out = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)) do
  local f = redis.call('HMGET', ARGV[1] .. m, 'env', 'attempt', 'error', 'dead_at')
  out[#out + 1] = m
  out[#out + 1] = f[1]
  out[#out + 1] = f[2]
  out[#out + 1] = f[3]
  out[#out + 1] = f[4]
end
return out
