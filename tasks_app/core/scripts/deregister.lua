-- deregister: a worker leaves the registry on a clean stop (which also ends a pause).
-- KEYS[1]: the worker registry
-- ARGV: worker_id
-- Returns: 1 if it was registered, else 0.
local worker = ARGV[1]
local existed = redis.call('ZREM', K_WORKERS, worker)
redis.call('DEL', k_worker(worker), k_worker_wake(worker), k_worker_active(worker))
redis.call('SREM', K_PAUSED_WORKERS, worker)
return existed
