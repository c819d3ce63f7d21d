-- Shared by every script (prepended at build time).
-- KEYS, always in this order: 1 waiting (zset id -> due ms), 2 leased (zset id -> lease expiry),
-- 3 dead (zset id -> dead_at), 4 wake (list), 5 env (hash id -> envelope), 6 lease_ms,
-- 7 attempt, 8 token, 9 error (hashes id -> value), 10 totals (hash: succeeded, failed),
-- 11 replayed (hash id -> 1 for tasks moved back from the dead).
local WAITING, LEASED, DEAD, WAKE, ENV, LEASE_MS, ATTEMPT, TOKEN, ERROR, TOTALS, REPLAYED =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]

-- One command over many arguments, 1000 at a time (Lua's unpack has a stack limit).
local function bulk(cmd, key, items)
  for i = 1, #items, 1000 do
    redis.call(cmd, key, unpack(items, i, math.min(i + 999, #items)))
  end
end

-- Delete every trace of these tasks from the per-task hashes.
local function forget(ids)
  for _, h in ipairs({ ENV, LEASE_MS, ATTEMPT, TOKEN, ERROR, REPLAYED }) do
    bulk('HDEL', h, ids)
  end
end

-- Whether `token` still holds the lease on `id`.
local function holds(id, token)
  return redis.call('HGET', TOKEN, id) == token and redis.call('ZSCORE', LEASED, id)
end

local function wake(n)
  for _ = 1, math.min(n, 16) do
    redis.call('LPUSH', WAKE, 1)
  end
  redis.call('LTRIM', WAKE, 0, 15)
end
