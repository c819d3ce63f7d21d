-- Delete the ready and scheduled tasks of a queue (and expired leases, which are ready); live
-- leases are kept. KEYS: waiting, leased. ARGV: task key prefix, now.
local victims = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])) do
  victims[#victims + 1] = m
  redis.call('ZREM', KEYS[2], m)
end
for _, m in ipairs(victims) do
  redis.call('DEL', ARGV[1] .. m)
end
redis.call('DEL', KEYS[1])
return #victims
