-- promote: scheduled | retrying tasks whose time has come -> pending, and the parked tasks
-- of rate-limited types whose next token is due back in line.
-- KEYS[1]: the schedule wake-up list
-- ARGV: max tasks to move per priority
-- Returns: {moved, ms until the next task is due, or -1 when none is}
local limit = tonumber(ARGV[1])
local now = now_ms()
local moved = 0
local next_due = -1
for p = 3, 0, -1 do
  local key = k_delayed(p)
  local ids = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    redis.call('ZREM', key, id)
    redis.call('HDEL', k_task(id), 'next_retry_at')
    make_pending(id, p, now, nil)
    moved = moved + 1
  end
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] then
    local due = tonumber(first[2])
    if next_due < 0 or due < next_due then next_due = due end
  end
end
local token_due = limits_on() and wake_due_types(now)
if token_due and (next_due < 0 or token_due < next_due) then next_due = token_due end
if next_due >= 0 then next_due = math.max(0, next_due - now) end
emit()
return {moved, next_due}
