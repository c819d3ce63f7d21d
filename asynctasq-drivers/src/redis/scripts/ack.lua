-- Delete tasks whose leases are still held. ARGV: (id, token) per lease (<= 1000 leases).
-- Counts the deleted ones in the queue's totals. Returns the ids whose lease was lost.
local ids, tokens = {}, {}
for i = 1, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
  tokens[#tokens + 1] = ARGV[i + 1]
end
if #ids == 0 then return {} end
local held = redis.call('HMGET', TOKEN, unpack(ids))
local scores = redis.call('ZMSCORE', LEASED, unpack(ids))
local done, lost = {}, {}
for i, id in ipairs(ids) do
  if held[i] == tokens[i] and scores[i] then
    done[#done + 1] = id
  else
    lost[#lost + 1] = id
  end
end
if #done > 0 then
  forget(done)
  bulk('ZREM', LEASED, done)
  redis.call('HINCRBY', TOTALS, 'succeeded', #done)
end
return lost
