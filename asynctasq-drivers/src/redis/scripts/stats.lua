-- Counts of the queue, taken atomically; an expired lease counts as ready. ARGV: now.
-- The fifth value is the earliest due time (ms) among ready tasks, -1 when none is ready:
-- the head of each zset, when it is due (scheduled tasks and live leases score in the future).
-- The sixth and seventh are the succeeded and failed totals.
local now = ARGV[1]
sweep(tonumber(now))
-- A parked task (scored from PARKED on) is ready: it waits for a place, not for a time.
local parked = redis.call('ZCOUNT', WAITING, PARKED, '+inf')
local ready = redis.call('ZCOUNT', WAITING, '-inf', now) + redis.call('ZCOUNT', LEASED, '-inf', now) + parked
local scheduled = redis.call('ZCOUNT', WAITING, '(' .. now, '+inf') - parked
local leased = redis.call('ZCOUNT', LEASED, '(' .. now, '+inf')
local earliest = -1
for _, key in ipairs({ WAITING, LEASED }) do
  local head = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if head[2] then
    local due = tonumber(head[2])
    if due <= tonumber(now) and (earliest < 0 or due < earliest) then
      earliest = due
    end
  end
end
local head = redis.call('ZRANGEBYSCORE', WAITING, PARKED, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
if head[2] then
  local due = tonumber(head[2]) - PARKED
  if earliest < 0 or due < earliest then earliest = due end
end
local totals = redis.call('HMGET', TOTALS, 'succeeded', 'failed')
return { ready, scheduled, leased, redis.call('ZCARD', DEAD), earliest, tonumber(totals[1]) or 0, tonumber(totals[2]) or 0 }
