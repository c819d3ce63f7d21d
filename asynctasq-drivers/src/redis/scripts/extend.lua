-- Move a held lease's expiry. 0 when the lease was lost; 2, leaving it, when a cancel flagged
-- the task. ARGV: id, token, new expiry.
if not holds(ARGV[1], ARGV[2]) then return 0 end
if redis.call('HEXISTS', CANCEL, ARGV[1]) == 1 then return 2 end
redis.call('ZADD', LEASED, 'XX', ARGV[3], ARGV[1])
return 1
