-- recover: running tasks whose lease expired (their worker died) end the
-- attempt with 'worker lost' and follow the retry policy; the task gets a new
-- fence, so the old worker's late ack, fail or heartbeat is refused.  Workers
-- whose heartbeat is older than the heartbeat timeout leave the registry.
-- KEYS[1]: the lease set
-- ARGV: max tasks per call, random seed
-- Returns: {n_recovered, n_reaped, then per recovered task the 7 values
--   id, new_state, next_retry_at | dlq message id, type, priority, attempts, worker_id,
--   then the reaped worker ids}
local limit = tonumber(ARGV[1])
math.randomseed(tonumber(ARGV[2]))
local now = now_ms()
local out = {}
local events = {}
local n_recovered = 0
local ids = redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  if redis.call('HGET', k_task(id), 'state') == 'running' then
    redis.call('HSET', k_task(id), 'fence', new_fence())
    out[#out + 1] = id
    for _, v in ipairs(fail_attempt(id, now, 'worker lost', 'retry', events)) do
      out[#out + 1] = v
    end
    n_recovered = n_recovered + 1
  else
    redis.call('ZREM', K_LEASES, id)
  end
end
local dead = redis.call('ZRANGEBYSCORE', K_WORKERS, '-inf', now - CFG_HEARTBEAT_TIMEOUT_MS)
for _, w in ipairs(dead) do
  redis.call('ZREM', K_WORKERS, w)
  redis.call('DEL', k_worker(w), k_worker_wake(w), k_worker_active(w))
  out[#out + 1] = w
end
emit(events)
table.insert(out, 1, #dead)
table.insert(out, 1, n_recovered)
return out
