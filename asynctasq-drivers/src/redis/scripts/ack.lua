-- Delete tasks whose leases are still held; return the ids whose lease was lost.
-- KEYS: leased. ARGV: task key prefix, then (id, token) per lease.
local lost = {}
for i = 2, #ARGV, 2 do
  local id, key = ARGV[i], ARGV[1] .. ARGV[i]
  if redis.call('HGET', key, 'token') == ARGV[i + 1] and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('DEL', key)
    redis.call('ZREM', KEYS[1], id)
  else
    lost[#lost + 1] = id
  end
end
return lost
