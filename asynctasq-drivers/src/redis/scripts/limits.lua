-- Store a queue's limits (see `asynctasq_core::limits`). ARGV: max_leased, per_key, rate,
-- rate_window_ms ('' for none of each), rate_per_key (1 or 0). Without limits per key nothing
-- holds the parked tasks back any more: all of them go back to waiting at their due times, in
-- this step; without a rate its log goes. Wakes blocked workers: a raised cap may leave room.
-- The log's entries are read by the rate's kind (by key, or for the queue): a new kind starts
-- a new log.
local was = redis.call('HGET', LIMITS, 'rate_per_key')
redis.call('DEL', LIMITS)
if ARGV[1] ~= '' then redis.call('HSET', LIMITS, 'max_leased', ARGV[1]) end
if ARGV[2] ~= '' then redis.call('HSET', LIMITS, 'per_key', ARGV[2]) end
if ARGV[3] ~= '' then
  redis.call('HSET', LIMITS, 'rate', ARGV[3], 'rate_window_ms', ARGV[4], 'rate_per_key', ARGV[5])
  if was ~= ARGV[5] then redis.call('DEL', STARTS) end
else
  redis.call('DEL', STARTS)
end
if ARGV[2] == '' and not (ARGV[3] ~= '' and ARGV[5] == '1') then
  unpark(redis.call('ZRANGE', PARKED_INDEX, 0, -1))
  redis.call('DEL', PARKED_INDEX, PARKED_KEYS)
end
wake(16)
return 1
