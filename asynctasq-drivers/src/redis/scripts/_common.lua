-- Shared by every script (prepended at build time).
-- KEYS, always in this order: 1 waiting (zset id -> due ms), 2 leased (zset id -> lease expiry),
-- 3 dead (zset id -> dead_at), 4 wake (list), 5 env (hash id -> envelope), 6 lease_ms,
-- 7 attempt, 8 token, 9 error (hashes id -> value), 10 totals (hash: succeeded, failed),
-- 11 replayed (hash id -> 1 for tasks moved back from the dead), 12 done (zset id -> expiry of
-- a succeeded task kept with its result), 13 done_env, 14 done_at ("finished_at:attempt", then
-- ":cancelled" when it was cancelled and ":s<when its run started>"), 15 done_result (hashes
-- id -> value of a kept task), 16 cancel (hash id -> how long (ms) to keep a leased task
-- flagged by a cancel once it is settled cancelled). 17 progress (hash id -> the latest progress its run
-- reported, as the engine encoded it), 18 errors (hash id -> every failed attempt's error: a
-- JSON array of {attempt, at, error}; kept while the task is live or dead), 19 dead_expiry
-- (zset id -> when a dead task expires: its dead letter's time to live from its death), 20
-- paused (a string present while the queue is paused), 21 unique (hash unique key ->
-- "owner|until|expires_ms", until 0 start, 1 done, 2 expiry), 22 unique_expiry (zset unique key
-- -> when its lock expires), 23 limits (hash: `max_leased`, `per_key`, `rate`, `rate_window_ms`,
-- `rate_per_key` (1 or 0), while one is set), 24
-- keys (hash id -> the task's key, for tasks that have one), 25 parked (zset, all scores 0:
-- "key NUL due NUL id" of each parked task, by key then due time), 26 parked_keys (set of the
-- keys with parked tasks), 27 starts (zset, the rate's log: "key NUL n NUL token" -> when a
-- claim started n of the key's tasks; for the whole queue "NUL cum NUL n NUL token", cum how many
-- the log counted before). A parked task stays in `waiting`, its score offset by PARKED.
local WAITING, LEASED, DEAD, WAKE, ENV, LEASE_MS, ATTEMPT, TOKEN, ERROR, TOTALS, REPLAYED =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local DONE, DONE_ENV, DONE_AT, DONE_RESULT, CANCEL, PROGRESS = KEYS[12], KEYS[13], KEYS[14], KEYS[15], KEYS[16], KEYS[17]
local ERRORS, DEAD_EXPIRY, PAUSED, UNIQUE, UNIQUE_EXPIRY, LIMITS = KEYS[18], KEYS[19], KEYS[20], KEYS[21], KEYS[22], KEYS[23]
local TASK_KEYS, PARKED_INDEX, PARKED_KEYS, STARTS = KEYS[24], KEYS[25], KEYS[26], KEYS[27]
-- What a parked task's score is offset by (`asynctasq_core::limits::PARKED`, 2^50: exact as a
-- double with any due time added).
local PARKED = 1125899906842624
-- The prefix's notice channel: the keys' prefix (before the queue's `{…}` tag) and `notices`.
-- A channel is no key: it belongs to no slot. Payloads: `s:ID,ID…` settled, `c:ID` cancel asked.
local NOTICES = (string.gsub(KEYS[1], '{[^{}]*}:waiting$', 'notices'))

-- One command over many arguments, 1000 at a time (Lua's unpack has a stack limit).
local function bulk(cmd, key, items)
  for i = 1, #items, 1000 do
    redis.call(cmd, key, unpack(items, i, math.min(i + 999, #items)))
  end
end

-- Delete every trace of these tasks from the per-task hashes.
local function forget(ids)
  for _, h in ipairs({ ENV, LEASE_MS, ATTEMPT, TOKEN, ERROR, REPLAYED, CANCEL, PROGRESS, ERRORS, TASK_KEYS }) do
    bulk('HDEL', h, ids)
  end
end

-- Whether `token` still holds the lease on `id`.
local function holds(id, token)
  return redis.call('HGET', TOKEN, id) == token and redis.call('ZSCORE', LEASED, id)
end

-- `:s<when its run started>` from a lease's token (random, `.` the claim's time, `@` the
-- consumer), for a kept record's `done_at`; '' for a token without it.
local function started(token)
  local at = token and string.match(token, '^%x+%.(%d+)')
  return at and (':s' .. at) or ''
end

-- Settle the live task `id` (waiting or leased) as cancelled: gone from the queue, kept until
-- now + keep with its envelope and attempt. Not counted in the totals.
local function cancelled(id, now, keep)
  redis.call('ZADD', DONE, now + keep, id)
  redis.call('HSET', DONE_ENV, id, redis.call('HGET', ENV, id))
  redis.call('HSET', DONE_AT, id, now .. ':' .. (redis.call('HGET', ATTEMPT, id) or '0') .. ':cancelled' .. started(redis.call('HGET', TOKEN, id)))
  redis.call('HDEL', DONE_RESULT, id)
  redis.call('ZREM', WAITING, id)
  redis.call('ZREM', LEASED, id)
  forget({ id })
  redis.call('PUBLISH', NOTICES, 's:' .. id)
end

-- Append a failure of `id`'s current attempt to its error history (before its token goes).
local function record_error(id, now, err)
  local stored = redis.call('HGET', ERRORS, id)
  local list = stored and cjson.decode(stored) or {}
  -- The lease's token names its consumer after an `@` (when the handle was named).
  local worker = string.match(redis.call('HGET', TOKEN, id) or '', '@(.*)$')
  list[#list + 1] = { attempt = tonumber(redis.call('HGET', ATTEMPT, id) or '0'), at = now, error = err, worker = worker }
  redis.call('HSET', ERRORS, id, cjson.encode(list))
end

-- Put the parked tasks of the index entries `entries` back in waiting at their due times; an
-- entry whose task was deleted, cancelled or unparked already is skipped. The caller removes
-- the entries.
local function unpark(entries)
  for _, e in ipairs(entries) do
    local id = string.match(e, '%z[^%z]*%z(.*)$')
    local score = tonumber(redis.call('ZSCORE', WAITING, id) or '0')
    if score >= PARKED then
      redis.call('ZADD', WAITING, string.format('%.0f', score - PARKED), id)
    end
  end
end

local function wake(n)
  for _ = 1, math.min(n, 16) do
    redis.call('LPUSH', WAKE, 1)
  end
  redis.call('LTRIM', WAKE, 0, 15)
end

-- Delete dead tasks: from the dead set, the per-task hashes and the expiry index.
local function bury(ids)
  if #ids > 0 then
    forget(ids)
    bulk('ZREM', DEAD, ids)
    bulk('ZREM', DEAD_EXPIRY, ids)
  end
end

-- Delete the kept and the dead tasks whose time to live has passed (up to 1000 of each a call;
-- the expiry indexes make a call with nothing expired two lookups).
local function sweep(now)
  local gone = redis.call('ZRANGEBYSCORE', DONE, '-inf', now, 'LIMIT', 0, 1000)
  if #gone > 0 then
    bulk('ZREM', DONE, gone)
    for _, h in ipairs({ DONE_ENV, DONE_AT, DONE_RESULT }) do
      bulk('HDEL', h, gone)
    end
  end
  local dead = redis.call('ZRANGEBYSCORE', DEAD_EXPIRY, '-inf', now, 'LIMIT', 0, 1000)
  if #dead > 0 then
    bury(dead)
  end
end
