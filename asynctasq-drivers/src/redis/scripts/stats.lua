-- Counts of one queue, taken atomically. An expired lease counts as ready.
-- KEYS: waiting, leased, dead. ARGV: now.
local now = ARGV[1]
local ready = redis.call('ZCOUNT', KEYS[1], '-inf', now) + redis.call('ZCOUNT', KEYS[2], '-inf', now)
local scheduled = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
local leased = redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')
return { ready, scheduled, leased, redis.call('ZCARD', KEYS[3]) }
