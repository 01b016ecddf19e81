-- deregister: a worker leaves the registry on a clean stop.
-- KEYS[1]: the worker registry
-- ARGV: worker_id
-- Returns: 1 if it was registered, else 0.
local worker = ARGV[1]
local existed = redis.call('ZREM', K_WORKERS, worker)
redis.call('DEL', k_worker(worker), k_worker_wake(worker), k_worker_active(worker))
return existed
