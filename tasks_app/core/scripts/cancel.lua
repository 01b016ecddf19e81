-- cancel: pending | scheduled | retrying -> cancelled, leaving its queue or
-- schedule in the same step, so it can never run afterwards.  A workflow step's cancel
-- cancels its workflow.
-- KEYS[1]: the sequence key (routing)
-- ARGV: id
-- Returns: {'ok'}.  Errors: TQ:NOT_FOUND, TQ:NOT_CANCELLABLE <state>.
local id = ARGV[1]
local tk = k_task(id)
local f = redis.call('HMGET', tk, 'state', 'priority', 'type', 'owner', 'wf')
local state, p = f[1], f[2]
if not state then return tq_error('NOT_FOUND', id) end
if state == 'pending' then
  if redis.call('ZREM', K_PENDING, id) == 0 then drop_parked(id, f[3]) end
elseif state == 'scheduled' or state == 'retrying' then
  redis.call('ZREM', k_delayed(p), id)
else
  return tq_error('NOT_CANCELLABLE', state)
end
redis.call('HDEL', tk, 'next_retry_at')
local now = now_ms()
finish(tk, 'cancelled', now)
count('cancelled', f[3])
event({'cancelled', id, f[3], p, f[4] or ''})
if f[5] then wf_cancel(f[5], now) end  -- a cancelled step cancels its workflow
emit()
return {'ok'}
