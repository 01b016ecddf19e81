-- dequeue: a worker slot takes the highest-priority pending task (FIFO within
-- a priority) and starts an attempt under a fresh lease and fencing token.
-- KEYS[1]: the lease set
-- ARGV: worker_id, then the priorities the worker serves, highest first
-- Returns: {'task', id, priority, fence, attempts, type, payload, metadata,
--           max_retries, timeout, queue_wait_us, started_at}
--   queue_wait_us is the time since the task last became pending; it is also
--   stored on the task as 'wait_us'.
--       or {'empty'}, {'paused'} (worker paused), {'unregistered'}.
local worker = ARGV[1]
local wk = k_worker(worker)
if redis.call('EXISTS', wk) == 0 then
  return {'unregistered'}
end
if redis.call('SISMEMBER', K_PAUSED_WORKERS, worker) == 1 then
  return {'paused'}
end
for i = 2, #ARGV do
  local p = ARGV[i]
  if redis.call('SISMEMBER', K_PAUSED, p) == 0 then
    local popped = redis.call('ZPOPMIN', k_pending(p))
    while popped[1] do
      local id = popped[1]
      local tk = k_task(id)
      local f = redis.call('HMGET', tk, 'state', 'type', 'payload', 'metadata', 'max_retries',
        'timeout', 'enqueued_us', 'attempts', 'owner')
      if f[1] == 'pending' then
        local us = now_us()
        local now = math.floor(tonumber(us) / 1000)
        local wait = string.format('%.0f', tonumber(us) - tonumber(f[7] or us))
        local fence = new_fence()
        local attempts = tonumber(f[8]) + 1
        redis.call('HSET', tk, 'state', 'running', 'worker_id', worker, 'started_at', now,
          'updated_at', now, 'fence', fence, 'attempts', attempts, 'wait_us', wait)
        redis.call('ZADD', K_LEASES, now + CFG_LEASE_MS, id)
        redis.call('SADD', k_worker_active(worker), id)
        observe('queue_wait', BUCKETS_QUEUE_WAIT, PRIORITY_NAMES[p], tonumber(wait) / 1000000)
        if listening() then
          emit({task_event('task.started', now, id, f[2], p, {worker_id = worker,
            attempt = attempts, queue_wait = tonumber(wait) / 1000000}, f[9])})
        end
        return {'task', id, p, fence, attempts, f[2], f[3], f[4], f[5], f[6], wait, now}
      end
      popped = redis.call('ZPOPMIN', k_pending(p))
    end
  end
end
return {'empty'}
