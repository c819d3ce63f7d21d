-- Claim a slot of a schedule, or pause or resume it. KEYS[28]: the queue's schedules (hash
-- name -> "last_slot|paused", last_slot empty while none was claimed), in the queue's slot.
-- ARGV: op ('claim', 'pause' or 'resume'), the schedule's name; for a claim then the slot, now,
-- and the slot's task (id, envelope, lease_ms, not_before) or nothing for a skipped slot.
-- A claim advances the schedule only if its last slot is older and it is not paused, and stores
-- the task in the same step (idempotent by id, as an enqueue). Returns 1 when it claimed (a
-- pause or resume: always), else 0.
local SCHEDULES = KEYS[28]
local op, name = ARGV[1], ARGV[2]
local stored = redis.call('HGET', SCHEDULES, name)
local last, paused = '', '0'
if stored then
  last, paused = string.match(stored, '^(%d*)|(%d)$')
end
if op ~= 'claim' then
  redis.call('HSET', SCHEDULES, name, last .. '|' .. (op == 'pause' and '1' or '0'))
  return 1
end
if paused == '1' or (last ~= '' and tonumber(last) >= tonumber(ARGV[3])) then
  return 0
end
redis.call('HSET', SCHEDULES, name, ARGV[3] .. '|0')
sweep(tonumber(ARGV[4]))
local id = ARGV[5]
if id and redis.call('HEXISTS', ENV, id) == 0 and not redis.call('ZSCORE', DONE, id) then
  redis.call('HSET', ENV, id, ARGV[6])
  redis.call('HSET', LEASE_MS, id, ARGV[7])
  redis.call('ZADD', WAITING, ARGV[8], id)
  wake(1)
end
return 1
