-- deregister: a worker leaves the registry on a clean stop (which also ends a pause),
-- after its supervisor put back or recorded every task its slots ran.
-- KEYS[1]: the worker registry
-- ARGV: worker_id
-- Returns: 1 if it was registered, else 0.
local worker = ARGV[1]
-- Anything still running under this worker (a task its slot took in the last
-- instant before it stopped) goes back to pending, uncounted: it never ran.
local now = now_ms()
for _, id in ipairs(redis.call('SMEMBERS', k_worker_active(worker))) do
  local f = redis.call('HMGET', k_task(id), 'state', 'worker_id')
  if f[1] == 'running' and f[2] == worker then
    put_back(id, worker, now)
  end
end
local existed = redis.call('ZREM', K_WORKERS, worker)
redis.call('DEL', k_worker(worker), k_worker_wake(worker), k_worker_active(worker))
redis.call('SREM', K_PAUSED_WORKERS, worker)
return existed
