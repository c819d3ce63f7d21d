-- Record the progress of a held lease's run. 0 when the lease was lost. ARGV: id, token, progress.
if not holds(ARGV[1], ARGV[2]) then return 0 end
redis.call('HSET', PROGRESS, ARGV[1], ARGV[3])
return 1
