-- limits: set or remove one type's limit in this shard.  Its parked tasks all go back in
-- line at their place (a take parks again those still over the new limit); its running
-- count stays, so attempts running across the change are given back when they end.
-- KEYS[1]: the shard's limits hash
-- ARGV: type, spec ('concurrency|n|window_ms', an empty part: no such limit; '' removes)
-- Returns: {tasks moved back in line}
local t, spec = ARGV[1], ARGV[2]
if spec == '' then
  redis.call('HDEL', K_LIMITS, t)
  redis.call('HDEL', K_TOKENS, t)
else
  redis.call('HSET', K_LIMITS, t, spec)
end
redis.call('ZREM', K_PARKED_DUE, t)
local moved, now = 0, now_ms()
repeat
  local n = wake_parked(t, now, true)
  moved = moved + n
until n < 1000
return {moved}
