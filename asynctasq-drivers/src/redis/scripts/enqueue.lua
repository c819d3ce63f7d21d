-- Store tasks and wake waiting workers. ARGV: now, then (id, envelope, lease_ms, not_before)
-- per task. Idempotent by id: a task whose id this queue already holds (waiting, leased or dead:
-- the envelope hash keeps every one of them; or succeeded and kept, until its expiry) or that
-- came earlier in the batch is skipped, so a leased task is never put back to wait. Returns 1
-- (stored) or 0 (skipped) per task, in order.
-- Bulk HSET/ZADD over per-queue hashes: a few calls per batch, not a few per task.
sweep(tonumber(ARGV[1]))
local envs, leases, scored, outcome, seen = {}, {}, {}, {}, {}
for i = 2, #ARGV, 4 do
  local id = ARGV[i]
  if seen[id] or redis.call('HEXISTS', ENV, id) == 1 or redis.call('ZSCORE', DONE, id) then
    outcome[#outcome + 1] = 0
  else
    seen[id] = true
    outcome[#outcome + 1] = 1
    envs[#envs + 1] = id
    envs[#envs + 1] = ARGV[i + 1]
    leases[#leases + 1] = id
    leases[#leases + 1] = ARGV[i + 2]
    scored[#scored + 1] = ARGV[i + 3]
    scored[#scored + 1] = id
  end
end
if #envs == 0 then return outcome end
bulk('HSET', ENV, envs)
bulk('HSET', LEASE_MS, leases)
bulk('ZADD', WAITING, scored)
wake(#envs / 2)
return outcome
