-- Delete the ready and scheduled tasks (and expired leases, which are ready; and parked ones,
-- with the notes of which keys have some); live leases and dead tasks stay. ARGV: now.
local victims = redis.call('ZRANGE', WAITING, 0, -1)
local expired = redis.call('ZRANGEBYSCORE', LEASED, '-inf', ARGV[1])
for _, m in ipairs(expired) do
  victims[#victims + 1] = m
end
bulk('ZREM', LEASED, expired)
forget(victims)
redis.call('DEL', WAITING, PARKED_INDEX, PARKED_KEYS)
return #victims
