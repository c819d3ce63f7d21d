-- Lease up to N due tasks. ARGV: now, max (<= 1000), token, fallback lease_ms.
-- Expired leases (crashed or stalled workers) go back to waiting first, due at their expiry, so
-- recovery needs no reaper process; one flagged by a cancel ends cancelled instead (flagged tasks
-- are never waiting: a nack or release of one settles it too). Returns (id, attempt, expires_at, envelope or nil,
-- replayed: 1 or nil) per task.
local now = tonumber(ARGV[1])
sweep(now)
local expired = redis.call('ZRANGEBYSCORE', LEASED, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1000)
if #expired > 0 then
  local all = {}
  for i = 1, #expired, 2 do all[#all + 1] = expired[i] end
  local flags = redis.call('HMGET', CANCEL, unpack(all))
  local scored, ids = {}, {}
  for i = 1, #expired, 2 do
    local flag = flags[(i + 1) / 2]
    if flag then
      cancelled(expired[i], now, tonumber(flag))
    else
      scored[#scored + 1] = expired[i + 1]
      scored[#scored + 1] = expired[i]
      ids[#ids + 1] = expired[i]
    end
  end
  if #ids > 0 then
    bulk('ZADD', WAITING, scored)
    bulk('ZREM', LEASED, ids)
  end
end
-- A paused queue is claimed by no one (its expired leases went back to waiting above).
if redis.call('EXISTS', PAUSED) == 1 then return {} end
-- A limited queue leases at most its cap less its live leases (the expired ones were moved
-- back above, at most a thousand a call: the count reads only leases that run past now). With
-- a cap per key (see `asynctasq_core::limits`), the live leases are counted by key, the parked
-- keys with room get their earliest parked tasks back, and the due tasks are taken in order,
-- those of a key without room parked. A rate counts the starts of its window from its log
-- (`STARTS`), and the claim logs its own. By key, the entries within the window are summed (at
-- most the rate for each key); for the whole queue, each entry carries how many the log had
-- counted before it (`NUL cum NUL n NUL token`, its times never going back), so the newest
-- entry and the oldest within the window count it, however many it holds.
local max = tonumber(ARGV[2])
local limits = redis.call('HMGET', LIMITS, 'max_leased', 'per_key', 'rate', 'rate_window_ms', 'rate_per_key')
local cap, per_key, rate, window = tonumber(limits[1]), tonumber(limits[2]), tonumber(limits[3]), tonumber(limits[4])
local rate_per_key = rate ~= nil and limits[5] == '1'
local keyed = per_key ~= nil or rate_per_key
local by_key, started = {}, {}
local log_at, log_cum = now, 0
-- A key's room (nil: keys are not limited), before this claim takes any.
local function key_room(k)
  local room
  if per_key then room = per_key - (by_key[k] or 0) end
  if rate_per_key then
    local r = rate - (started[k] or 0)
    if room == nil or r < room then room = r end
  end
  return room
end
if cap or per_key or rate then
  if cap or per_key then
    local live = redis.call('ZRANGEBYSCORE', LEASED, '(' .. now, '+inf')
    if cap then max = math.min(max, cap - #live) end
    if per_key then
      for j = 1, #live, 1000 do
        local keys = redis.call('HMGET', TASK_KEYS, unpack(live, j, math.min(j + 999, #live)))
        for _, k in ipairs(keys) do
          if k then by_key[k] = (by_key[k] or 0) + 1 end
        end
      end
    end
  end
  if rate then
    local since = now - window
    redis.call('ZREMRANGEBYSCORE', STARTS, '-inf', since - 1000) -- RATE_LOG_SLACK
    if rate_per_key then
      for _, e in ipairs(redis.call('ZRANGEBYSCORE', STARTS, '(' .. since, '+inf')) do
        local k, n = string.match(e, '^(.-)%z(%d+)%z')
        started[k] = (started[k] or 0) + tonumber(n)
      end
    else
      local last = redis.call('ZRANGE', STARTS, -1, -1, 'WITHSCORES')
      local in_window = 0
      if #last > 0 then
        local cum, n = string.match(last[1], '^%z(%d+)%z(%d+)%z')
        log_at, log_cum = math.max(now, tonumber(last[2])), tonumber(cum) + tonumber(n)
        local first = redis.call('ZRANGEBYSCORE', STARTS, '(' .. since, '+inf', 'LIMIT', 0, 1)
        if #first > 0 then in_window = log_cum - tonumber(string.match(first[1], '^%z(%d+)%z')) end
      end
      max = math.min(max, rate - in_window)
    end
  end
  if keyed then
    for _, k in ipairs(redis.call('SRANDMEMBER', PARKED_KEYS, 100)) do
      local room = key_room(k)
      if room > 0 then
        local entries = redis.call('ZRANGEBYLEX', PARKED_INDEX, '[' .. k .. '\0', '[' .. k .. '\0\255', 'LIMIT', 0, room)
        unpark(entries)
        if #entries > 0 then bulk('ZREM', PARKED_INDEX, entries) end
        if #entries < room then redis.call('SREM', PARKED_KEYS, k) end
      end
    end
  end
  if max <= 0 then return {} end
end
local ids
local taken = {}
if keyed then
  local due = redis.call('ZRANGEBYSCORE', WAITING, '-inf', now, 'WITHSCORES', 'LIMIT', 0, math.max(4 * max, 100))
  if #due == 0 then return {} end
  local all = {}
  for j = 1, #due, 2 do all[#all + 1] = due[j] end
  local keys = redis.call('HMGET', TASK_KEYS, unpack(all))
  local parked, index, parked_keys, rooms = {}, {}, {}, {}
  ids = {}
  for j, id in ipairs(all) do
    if #ids >= max then break end
    local k = keys[j]
    if k and rooms[k] == nil then rooms[k] = key_room(k) end
    if k and (taken[k] or 0) >= rooms[k] then
      parked[#parked + 1] = string.format('%.0f', tonumber(due[2 * j]) + PARKED)
      parked[#parked + 1] = id
      index[#index + 1] = 0
      index[#index + 1] = k .. '\0' .. string.format('%016.0f', tonumber(due[2 * j])) .. '\0' .. id
      parked_keys[#parked_keys + 1] = k
    else
      if k then taken[k] = (taken[k] or 0) + 1 end
      ids[#ids + 1] = id
    end
  end
  if #parked > 0 then
    bulk('ZADD', WAITING, parked)
    bulk('ZADD', PARKED_INDEX, index)
    bulk('SADD', PARKED_KEYS, parked_keys)
  end
else
  ids = redis.call('ZRANGEBYSCORE', WAITING, '-inf', now, 'LIMIT', 0, max)
end
if #ids == 0 then return {} end
if rate then
  local log = {}
  if rate_per_key then
    for k, n in pairs(taken) do
      log[#log + 1] = now
      log[#log + 1] = k .. '\0' .. n .. '\0' .. ARGV[3]
    end
  else
    log = {string.format('%.0f', log_at), '\0' .. string.format('%015.0f', log_cum) .. '\0' .. #ids .. '\0' .. ARGV[3]}
  end
  if #log > 0 then bulk('ZADD', STARTS, log) end
end
local leases = redis.call('HMGET', LEASE_MS, unpack(ids))
local attempts = redis.call('HMGET', ATTEMPT, unpack(ids))
local envs = redis.call('HMGET', ENV, unpack(ids))
local replays = redis.call('HMGET', REPLAYED, unpack(ids))
local attempt_pairs, token_pairs, scored, out = {}, {}, {}, {}
for i, id in ipairs(ids) do
  local attempt = (tonumber(attempts[i]) or 0) + 1
  local expires = now + (tonumber(leases[i]) or tonumber(ARGV[4]))
  attempt_pairs[#attempt_pairs + 1] = id
  attempt_pairs[#attempt_pairs + 1] = attempt
  token_pairs[#token_pairs + 1] = id
  token_pairs[#token_pairs + 1] = ARGV[3]
  scored[#scored + 1] = expires
  scored[#scored + 1] = id
  out[#out + 1] = id
  out[#out + 1] = attempt
  out[#out + 1] = expires
  out[#out + 1] = envs[i]
  out[#out + 1] = replays[i]
end
bulk('HSET', ATTEMPT, attempt_pairs)
bulk('HSET', TOKEN, token_pairs)
bulk('ZREM', WAITING, ids)
bulk('ZADD', LEASED, scored)
return out
