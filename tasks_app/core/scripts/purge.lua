-- purge: pending -> cancelled for one priority's queue, one batch at a time, oldest
-- first; each task leaves the pending set in the same step, like cancel.
-- KEYS[1]: the pending set of the priority
-- ARGV: priority, batch size, highest seq to touch (tasks enqueued after the
--   operator looked, which have a higher seq, are left alone)
-- Returns: {n_cancelled, n_left in the pending set, entries read}.  An id whose record
--   is gone or no longer pending is only taken out of the set (no dangling entry).
local p, limit, upto = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local key = k_pending(p)
local ids = redis.call('ZRANGEBYSCORE', key, '-inf', upto, 'LIMIT', 0, limit)
local now = now_ms()
local events = {}
local n = 0
for _, id in ipairs(ids) do
  redis.call('ZREM', key, id)
  local tk = k_task(id)
  local f = redis.call('HMGET', tk, 'state', 'type', 'owner')
  if f[1] == 'pending' then
    finish(tk, 'cancelled', now)
    count('cancelled', f[2])
    n = n + 1
    if listening() then
      events[#events + 1] = task_event('task.cancelled', now, id, f[2], p, nil, f[3])
    end
  end
end
emit(events)
return {n, redis.call('ZCARD', key), #ids}
