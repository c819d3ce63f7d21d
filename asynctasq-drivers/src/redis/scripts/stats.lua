-- Counts of the queue, taken atomically; an expired lease counts as ready. ARGV: now.
local now = ARGV[1]
local ready = redis.call('ZCOUNT', WAITING, '-inf', now) + redis.call('ZCOUNT', LEASED, '-inf', now)
local scheduled = redis.call('ZCOUNT', WAITING, '(' .. now, '+inf')
local leased = redis.call('ZCOUNT', LEASED, '(' .. now, '+inf')
return { ready, scheduled, leased, redis.call('ZCARD', DEAD) }
