-- ack: a running attempt succeeded: running -> completed.
-- KEYS[1]: the lease set
-- ARGV: id, worker_id, fence, result_json
-- Returns: {'ok', started_at, completed_at} or {'already'} when this very
--   attempt was acknowledged before (a retried call after a lost reply).
-- Errors: TQ:NOT_FOUND, TQ:STALE (the lease was taken over: fencing).
local id, worker, fence = ARGV[1], ARGV[2], ARGV[3]
local state, err = check_fence(id, fence)
if err then return err end
if state == 'completed' then return {'already'} end
if state ~= 'running' then return tq_error('STALE', id) end
local tk = k_task(id)
local now = now_ms()
release_lease(id, worker)
count_worker(worker, 'processed')
redis.call('HSET', tk, 'result', ARGV[4])
redis.call('HDEL', tk, 'error')
finish(tk, 'completed', now)
return {'ok', redis.call('HGET', tk, 'started_at'), now}
