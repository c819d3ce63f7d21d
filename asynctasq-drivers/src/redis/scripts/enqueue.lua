-- Store tasks and wake waiting workers. ARGV: now, the stride (5, or 6 when a task of the batch
-- has a key), then (id, envelope, lease_ms, not_before, unique[, key]) per task; key '' for a
-- task without one. Idempotent by id: a task whose id this queue already holds (waiting, leased
-- or dead: the envelope hash keeps every one of them; or succeeded and kept, until its expiry)
-- or that came earlier in the batch is skipped, so a leased task is never put back to wait.
-- `unique` is '' for a plain task, else 'until|ttl_ms|mode|key' (until 0 start, 1 done, 2
-- expiry; mode 0 skip, 1 replace, 2 debounce): a task whose key a lock still holds is not
-- stored (see `asynctasq_core::unique`; the lock is judged by its owner's state here, in the
-- same script that stores the task). Returns per task, in order: 1 (stored), 0 (its id was
-- stored), or the id of the task holding its unique key.
-- Bulk HSET/ZADD over per-queue hashes: a few calls per batch, not a few per task.
local now = tonumber(ARGV[1])
local STRIDE = tonumber(ARGV[2])
sweep(now)
local envs, leases, scored, outcome, seen, keyed_ids = {}, {}, {}, {}, {}, {}
-- Keys taken in this batch: the index of their holder's pair in `envs` (its envelope at +1).
-- Locks to write, as HSET and ZADD argument lists, written in bulk at the end like the tasks
-- (a later task of the batch reads `taken`, never the hash).
local taken, locks, expiries = {}, {}, {}

-- Each unique task's spec, parsed, by its ARGV index (in arrays: a table per task cost a third
-- of the script), and the stored lock of every key of the batch, read by one HMGET (a call per
-- task cost as much again).
local holds, ttls, modes, keyed, keys, stored = {}, {}, {}, {}, {}, {}
for i = 3, #ARGV, STRIDE do
  if ARGV[i + 4] ~= '' then
    holds[i], ttls[i], modes[i], keyed[i] = string.match(ARGV[i + 4], '^(%d)|(%d+)|(%d)|(.*)$')
    keys[#keys + 1] = keyed[i]
  end
end
if #keys > 0 then
  local expired = redis.call('ZRANGEBYSCORE', UNIQUE_EXPIRY, '-inf', now, 'LIMIT', 0, 100)
  if #expired > 0 then
    bulk('HDEL', UNIQUE, expired)
    bulk('ZREM', UNIQUE_EXPIRY, expired)
  end
  for j = 1, #keys, 1000 do
    local last = math.min(j + 999, #keys)
    local values = redis.call('HMGET', UNIQUE, unpack(keys, j, last))
    for k = j, last do
      stored[keys[k]] = values[k - j + 1]
    end
  end
end

-- Where the lock owner `id` is: 'waiting' for its first delivery, 'started', or 'gone' (not
-- live, or flagged by a cancel).
local function owner_state(id)
  if redis.call('HEXISTS', ENV, id) == 0 or redis.call('ZSCORE', DEAD, id) or redis.call('HEXISTS', CANCEL, id) == 1 then
    return 'gone'
  end
  if redis.call('ZSCORE', LEASED, id) or tonumber(redis.call('HGET', ATTEMPT, id) or '0') > 0 then
    return 'started'
  end
  return 'waiting'
end

local function lock(key, owner, hold, expires)
  locks[#locks + 1] = key
  locks[#locks + 1] = owner .. '|' .. hold .. '|' .. expires
  expiries[#expiries + 1] = expires
  expiries[#expiries + 1] = key
end

-- The holder of the unique key of task `i` (its ARGV index) if a lock still holds it; else the
-- key is taken for the task and nil returned.
local function holder(i)
  local mode, key = modes[i], keyed[i]
  local at = taken[key]
  if at then
    if mode ~= '0' then
      envs[at + 1] = ARGV[i + 1]
      leases[at + 1] = ARGV[i + 2]
      if mode == '2' then
        scored[at] = ARGV[i + 3]
      end
    end
    return envs[at]
  end
  local value = stored[key]
  if value then
    local owner, held_until, expires = string.match(value, '^([^|]*)|(%d)|(%d+)$')
    local state = owner_state(owner)
    if now < tonumber(expires)
      and (held_until == '2' or (held_until == '1' and state ~= 'gone') or (held_until == '0' and state == 'waiting')) then
      if mode ~= '0' and state == 'waiting' then
        -- The holder's id is the member's: the reader of these bytes puts it back.
        redis.call('HSET', ENV, owner, ARGV[i + 1])
        redis.call('HSET', LEASE_MS, owner, ARGV[i + 2])
        if mode == '2' then
          redis.call('ZADD', WAITING, ARGV[i + 3], owner)
          lock(key, owner, held_until, now + tonumber(ttls[i]))
        end
      end
      return owner
    end
  end
  lock(key, ARGV[i], holds[i], now + tonumber(ttls[i]))
  taken[key] = #envs + 1
  return nil
end

for i = 3, #ARGV, STRIDE do
  local id = ARGV[i]
  if seen[id] or redis.call('HEXISTS', ENV, id) == 1 or redis.call('ZSCORE', DONE, id) then
    outcome[#outcome + 1] = 0
  else
    local held = keyed[i] and holder(i)
    if held then
      outcome[#outcome + 1] = held
    else
      seen[id] = true
      outcome[#outcome + 1] = 1
      envs[#envs + 1] = id
      envs[#envs + 1] = ARGV[i + 1]
      leases[#leases + 1] = id
      leases[#leases + 1] = ARGV[i + 2]
      scored[#scored + 1] = ARGV[i + 3]
      scored[#scored + 1] = id
      if STRIDE == 6 and ARGV[i + 5] ~= '' then
        keyed_ids[#keyed_ids + 1] = id
        keyed_ids[#keyed_ids + 1] = ARGV[i + 5]
      end
    end
  end
end
if #locks > 0 then
  bulk('HSET', UNIQUE, locks)
  bulk('ZADD', UNIQUE_EXPIRY, expiries)
end
if #envs == 0 then return outcome end
bulk('HSET', ENV, envs)
bulk('HSET', LEASE_MS, leases)
bulk('ZADD', WAITING, scored)
if #keyed_ids > 0 then
  bulk('HSET', TASK_KEYS, keyed_ids)
end
wake(#envs / 2)
return outcome
