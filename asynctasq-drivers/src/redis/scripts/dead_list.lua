-- The oldest dead tasks that have not expired. ARGV: limit, now. Returns (id, envelope,
-- attempt, error, dead_at, error history) per task.
sweep(tonumber(ARGV[2]))
local dead = redis.call('ZRANGE', DEAD, 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
local ids = {}
for i = 1, #dead, 2 do
  ids[#ids + 1] = dead[i]
end
if #ids == 0 then return {} end
local envs = redis.call('HMGET', ENV, unpack(ids))
local attempts = redis.call('HMGET', ATTEMPT, unpack(ids))
local errors = redis.call('HMGET', ERROR, unpack(ids))
local histories = redis.call('HMGET', ERRORS, unpack(ids))
local out = {}
for i, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = envs[i]
  out[#out + 1] = attempts[i]
  out[#out + 1] = errors[i]
  out[#out + 1] = dead[2 * i]
  out[#out + 1] = histories[i]
end
return out
