-- Return a leased task to waiting (nack with delay, or release). 0 when the lease was lost.
-- ARGV: id, token, visible_at, error ('' for none), '1' to take back the attempt (release), now.
-- A task flagged by a cancel ends cancelled instead.
local id = ARGV[1]
if not holds(id, ARGV[2]) then return 0 end
local keep = redis.call('HGET', CANCEL, id)
if keep then
  cancelled(id, tonumber(ARGV[6]), tonumber(keep))
  return 1
end
if ARGV[4] ~= '' then
  redis.call('HSET', ERROR, id, ARGV[4])
  record_error(id, tonumber(ARGV[6]), ARGV[4])
end
redis.call('HDEL', TOKEN, id)
if ARGV[5] == '1' then redis.call('HINCRBY', ATTEMPT, id, -1) end
redis.call('ZREM', LEASED, id)
redis.call('ZADD', WAITING, ARGV[3], id)
wake(1)
return 1
