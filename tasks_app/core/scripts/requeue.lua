-- requeue: put a running task back unstarted (graceful shutdown): running ->
-- pending at its old place in line, the attempt not counted.
-- KEYS[1]: the lease set
-- ARGV: id, worker_id, fence
-- Returns: {'ok'} or {'already'}.  Errors: TQ:NOT_FOUND, TQ:STALE.
local id, worker, fence = ARGV[1], ARGV[2], ARGV[3]
local state, err = check_fence(id, fence)
if err then return err end
if state ~= 'running' then
  if state == 'pending' then return {'already'} end
  return tq_error('STALE', id)
end
local tk = k_task(id)
release_lease(id, worker)
local f = redis.call('HMGET', tk, 'priority', 'seq')
redis.call('HINCRBY', tk, 'attempts', -1)
redis.call('HDEL', tk, 'worker_id', 'started_at')
make_pending(id, f[1], now_ms(), f[2])
return {'ok'}
