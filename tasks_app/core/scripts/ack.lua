-- ack: a running attempt succeeded: running -> completed.
-- KEYS[1]: the lease set
-- ARGV: id, worker_id, fence, result_json, handler run time in seconds
-- Returns: {'ok', started_at, completed_at} or {'already'} when this very
--   attempt was acknowledged before (a retried call after a lost reply).
-- Errors: TQ:NOT_FOUND, TQ:STALE (the lease was taken over: fencing).
local id, worker, fence = ARGV[1], ARGV[2], ARGV[3]
local tk = k_task(id)
local f = redis.call('HMGET', tk, 'state', 'fence', 'started_at', 'error', 'type', 'priority',
  'attempts', 'owner')
if not f[1] then return tq_error('NOT_FOUND', id) end
if f[2] ~= fence then return tq_error('STALE', id) end
if f[1] == 'completed' then return {'already'} end
if f[1] ~= 'running' then return tq_error('STALE', id) end
local now = now_ms()
release_lease(id, worker)
if f[4] then redis.call('HDEL', tk, 'error') end
redis.call('HSET', tk, 'result', ARGV[4], 'state', 'completed', 'completed_at', now,
  'updated_at', now)
redis.call('PEXPIRE', tk, CFG_RESULT_TTL_MS)
count('completed', f[5], 'success')
observe('duration', BUCKETS_DURATION, f[5], tonumber(ARGV[5]))
if listening() then
  emit({task_event('task.completed', now, id, f[5], f[6], {worker_id = worker,
    attempt = tonumber(f[7]), duration = tonumber(ARGV[5])}, f[8])})
end
return {'ok', f[3], now}
