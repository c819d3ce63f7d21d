-- Move a held lease's expiry. 0 when the lease was lost. ARGV: id, token, new expiry.
if not holds(ARGV[1], ARGV[2]) then return 0 end
redis.call('ZADD', LEASED, 'XX', ARGV[3], ARGV[1])
return 1
