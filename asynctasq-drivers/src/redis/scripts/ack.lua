-- Delete tasks whose leases are still held. ARGV: now, then (id, token, keep_ms, result) per
-- lease (<= 1000 leases; result '' for none). A deleted task with keep_ms > 0 is kept as
-- succeeded, with its envelope, attempt and result, until now + keep_ms. Counts the deleted
-- ones in the queue's totals. Returns the ids whose lease was lost.
local now = tonumber(ARGV[1])
sweep(now)
local ids, tokens, keeps, results = {}, {}, {}, {}
for i = 2, #ARGV, 4 do
  ids[#ids + 1] = ARGV[i]
  tokens[#tokens + 1] = ARGV[i + 1]
  keeps[#keeps + 1] = tonumber(ARGV[i + 2])
  results[#results + 1] = ARGV[i + 3]
end
if #ids == 0 then return {} end
local held = redis.call('HMGET', TOKEN, unpack(ids))
local scores = redis.call('ZMSCORE', LEASED, unpack(ids))
local done, lost, kept = {}, {}, {}
for i, id in ipairs(ids) do
  if held[i] == tokens[i] and scores[i] then
    done[#done + 1] = id
    if keeps[i] > 0 then kept[#kept + 1] = i end
  else
    lost[#lost + 1] = id
  end
end
if #kept > 0 then
  local kept_ids = {}
  for _, i in ipairs(kept) do kept_ids[#kept_ids + 1] = ids[i] end
  local kept_envs = redis.call('HMGET', ENV, unpack(kept_ids))
  local kept_attempts = redis.call('HMGET', ATTEMPT, unpack(kept_ids))
  local expiry, envs, ats, with = {}, {}, {}, {}
  for k, i in ipairs(kept) do
    local id = ids[i]
    expiry[#expiry + 1] = now + keeps[i]
    expiry[#expiry + 1] = id
    envs[#envs + 1] = id
    envs[#envs + 1] = kept_envs[k]
    ats[#ats + 1] = id
    ats[#ats + 1] = now .. ':' .. (kept_attempts[k] or '0') .. started(tokens[i])
    if results[i] ~= '' then
      with[#with + 1] = id
      with[#with + 1] = results[i]
    end
  end
  bulk('ZADD', DONE, expiry)
  bulk('HSET', DONE_ENV, envs)
  bulk('HSET', DONE_AT, ats)
  -- No stale result to clear for the others: an id is stored again only after its record
  -- was swept (enqueue sweeps first), and the sweep deletes the result with it.
  if #with > 0 then bulk('HSET', DONE_RESULT, with) end
  -- Only kept tasks are noticed: a waiter on one kept for nothing has no result to read.
  redis.call('PUBLISH', NOTICES, 's:' .. table.concat(kept_ids, ','))
end
if #done > 0 then
  forget(done)
  bulk('ZREM', LEASED, done)
  redis.call('HINCRBY', TOTALS, 'succeeded', #done)
end
return lost
