-- Settle a held lease's task as cancelled, kept until now + keep_ms. 0 when the lease was lost.
-- ARGV: id, token, now, keep_ms.
if not holds(ARGV[1], ARGV[2]) then return 0 end
cancelled(ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]))
return 1
