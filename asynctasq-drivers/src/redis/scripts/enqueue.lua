-- Store tasks and wake waiting workers. ARGV: (id, envelope, lease_ms, not_before) per task.
-- Bulk HSET/ZADD over per-queue hashes: a few calls per batch, not a few per task.
local envs, leases, scored = {}, {}, {}
for i = 1, #ARGV, 4 do
  envs[#envs + 1] = ARGV[i]
  envs[#envs + 1] = ARGV[i + 1]
  leases[#leases + 1] = ARGV[i]
  leases[#leases + 1] = ARGV[i + 2]
  scored[#scored + 1] = ARGV[i + 3]
  scored[#scored + 1] = ARGV[i]
end
if #envs == 0 then return 0 end
bulk('HSET', ENV, envs)
bulk('HSET', LEASE_MS, leases)
bulk('ZADD', WAITING, scored)
wake(#ARGV / 4)
return #ARGV / 4
