-- Delete task `id` of this queue unless it is leased. ARGV: id, now. 2: leased, left alone;
-- 1: deleted (waiting, dead, or kept and not expired); 0: none.
local id, now = ARGV[1], tonumber(ARGV[2])
local lease = redis.call('ZSCORE', LEASED, id)
if lease and tonumber(lease) > now then return 2 end
if lease or redis.call('ZSCORE', WAITING, id) or redis.call('ZSCORE', DEAD, id) then
  redis.call('ZREM', WAITING, id)
  redis.call('ZREM', LEASED, id)
  redis.call('ZREM', DEAD, id)
  redis.call('ZREM', DEAD_EXPIRY, id)
  forget({ id })
  return 1
end
local kept = redis.call('ZSCORE', DONE, id)
if kept then
  redis.call('ZREM', DONE, id)
  for _, h in ipairs({ DONE_ENV, DONE_AT, DONE_RESULT }) do redis.call('HDEL', h, id) end
  if tonumber(kept) > now then return 1 end
end
return 0
