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
-- back above, at most a thousand a call: the count reads only leases that run past now).
local max = tonumber(ARGV[2])
local cap = redis.call('GET', LIMITS)
if cap then
  max = math.min(max, tonumber(cap) - redis.call('ZCOUNT', LEASED, '(' .. now, '+inf'))
  if max <= 0 then return {} end
end
local ids = redis.call('ZRANGEBYSCORE', WAITING, '-inf', now, 'LIMIT', 0, max)
if #ids == 0 then return {} end
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
