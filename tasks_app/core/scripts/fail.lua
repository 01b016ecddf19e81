-- fail: a running attempt failed: running -> retrying | dead_letter | failed.
-- KEYS[1]: the pending set
-- ARGV: id, worker_id, fence, error, kind ('retry' | 'permanent'), random seed,
--   handler run time in seconds ('' when unknown: the slot died)
-- Returns: {new_state, next_retry_at | dlq message id | '', type, priority, attempts,
--   worker_id}, or {'already', state}
--   when this attempt was already ended (a retried call after a lost reply).
-- Errors: TQ:NOT_FOUND, TQ:STALE.
local id, fence = ARGV[1], ARGV[3]
local state, err = check_fence(id, fence)
if err then return err end
if state ~= 'running' then
  if state == 'completed' or state == 'pending' then return tq_error('STALE', id) end
  return {'already', state}
end
math.randomseed(tonumber(ARGV[6]))
if ARGV[7] ~= '' then
  observe('duration', BUCKETS_DURATION, redis.call('HGET', k_task(id), 'type'), tonumber(ARGV[7]))
end
local out = fail_attempt(id, now_ms(), ARGV[4], ARGV[5])
emit()
return out
