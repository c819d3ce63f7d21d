-- Store a queue's limits (see `asynctasq_core::limits`). ARGV: max_leased, per_key ('' for
-- none of either). Without a cap per key nothing holds the parked tasks back any more: all of
-- them go back to waiting at their due times, in this step. Wakes blocked workers: a raised
-- cap may leave room.
redis.call('DEL', LIMITS)
if ARGV[1] ~= '' then redis.call('HSET', LIMITS, 'max_leased', ARGV[1]) end
if ARGV[2] ~= '' then redis.call('HSET', LIMITS, 'per_key', ARGV[2]) end
if ARGV[2] == '' then
  unpark(redis.call('ZRANGE', PARKED_INDEX, 0, -1))
  redis.call('DEL', PARKED_INDEX, PARKED_KEYS)
end
wake(16)
return 1
