-- retry: failed | dead_letter -> pending now, keeping the task's id, as a DLQ retry does:
-- attempts reset, error cleared, a dead-lettered task's entry leaves the stream, a failed
-- task's record stops expiring.
-- KEYS[1]: the sequence key (routing)
-- ARGV: id
-- Returns: {previous state}.  Errors: TQ:NOT_FOUND, TQ:NOT_RETRYABLE <state>.
local id = ARGV[1]
local tk = k_task(id)
local f = redis.call('HMGET', tk, 'state', 'priority')
local state = f[1]
if not state then return tq_error('NOT_FOUND', id) end
if state ~= 'failed' and state ~= 'dead_letter' then
  return tq_error('NOT_RETRYABLE', state)
end
rerun(id, f[2], now_ms())
return {state}
