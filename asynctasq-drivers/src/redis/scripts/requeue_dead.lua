-- Move dead tasks back to waiting, due now, attempts reset, marked replayed. ARGV: now, 'all'
-- or 'ids', ids...
local ids = {}
if ARGV[2] == 'all' then
  ids = redis.call('ZRANGE', DEAD, 0, -1)
else
  for i = 3, #ARGV do
    if redis.call('ZSCORE', DEAD, ARGV[i]) then
      ids[#ids + 1] = ARGV[i]
    end
  end
end
if #ids == 0 then return 0 end
local scored, marks = {}, {}
for _, id in ipairs(ids) do
  scored[#scored + 1] = ARGV[1]
  scored[#scored + 1] = id
  marks[#marks + 1] = id
  marks[#marks + 1] = 1
end
for _, h in ipairs({ ATTEMPT, TOKEN, ERROR }) do
  bulk('HDEL', h, ids)
end
bulk('ZREM', DEAD, ids)
bulk('ZREM', DEAD_EXPIRY, ids)
bulk('ZADD', WAITING, scored)
bulk('HSET', REPLAYED, marks)
wake(#ids)
return #ids
