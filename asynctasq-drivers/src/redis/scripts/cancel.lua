-- Cancel task `id` of this queue. ARGV: id, now, keep_ms. A leased task (its lease live) is
-- flagged (keep at least 1) and left to its holder: 2. A waiting one, or one whose lease ran out,
-- ends cancelled, kept until now + keep: 1. A dead one, or one kept as settled: 3. None: 0.
local id, now, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local lease = redis.call('ZSCORE', LEASED, id)
if lease and tonumber(lease) > now then
  redis.call('HSET', CANCEL, id, math.max(keep, 1))
  redis.call('PUBLISH', NOTICES, 'c:' .. id)
  return 2
end
if lease or redis.call('ZSCORE', WAITING, id) then
  cancelled(id, now, keep)
  return 1
end
local kept = redis.call('ZSCORE', DONE, id)
if redis.call('ZSCORE', DEAD, id) or (kept and tonumber(kept) > now) then return 3 end
return 0
