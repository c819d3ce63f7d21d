-- Move a held lease's expiry. 0 when the lease was lost.
-- KEYS: leased. ARGV: task key prefix, id, token, new expiry.
if redis.call('HGET', ARGV[1] .. ARGV[2], 'token') ~= ARGV[3] or not redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', ARGV[4], ARGV[2])
return 1
