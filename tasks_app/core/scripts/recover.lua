-- recover: running tasks whose lease expired (their worker died) end the
-- attempt with 'worker lost' and follow the retry policy; the task gets a new
-- fence, so the old worker's late ack, fail or heartbeat is refused.
-- A lease is the worker's heartbeat: an attempt's lease runs out a lease time after the
-- later of its start and its worker's last beat.  Workers whose heartbeat is older than
-- the heartbeat timeout leave the registry; their attempts whose lease has not run out yet
-- wait in K_LEASES (scored by lease expiry) until it does.
-- KEYS[1]: the worker registry
-- ARGV: max tasks per call, random seed
-- Returns: {n_recovered, n_reaped, then per recovered task the 7 values
--   id, new_state, next_retry_at | dlq message id, type, priority, attempts, worker_id,
--   then the reaped worker ids}
local limit = tonumber(ARGV[1])
math.randomseed(tonumber(ARGV[2]))
local now = now_ms()
local out = {}
local n_recovered = 0

local function recover_one(id)
  redis.call('HSET', k_task(id), 'fence', new_fence())
  out[#out + 1] = id
  for _, v in ipairs(fail_attempt(id, now, 'worker lost', 'retry')) do
    out[#out + 1] = v
  end
  n_recovered = n_recovered + 1
end

local reaped = {}
local quiet = now - math.min(CFG_LEASE_MS, CFG_HEARTBEAT_TIMEOUT_MS)
local silent = redis.call('ZRANGEBYSCORE', K_WORKERS, '-inf', quiet, 'WITHSCORES')
for i = 1, #silent, 2 do
  local w, beat = silent[i], tonumber(silent[i + 1])
  local gone = beat < now - CFG_HEARTBEAT_TIMEOUT_MS
  local done = true
  for _, id in ipairs(redis.call('SMEMBERS', k_worker_active(w))) do
    local f = redis.call('HMGET', k_task(id), 'state', 'worker_id', 'started_at')
    if f[1] ~= 'running' or f[2] ~= w then
      redis.call('SREM', k_worker_active(w), id)
    else
      local expiry = math.max(beat, tonumber(f[3] or '0')) + CFG_LEASE_MS
      if expiry <= now then
        if n_recovered < limit then recover_one(id) else done = false end
      elseif gone then
        redis.call('ZADD', K_LEASES, expiry, id)
      end
    end
  end
  if gone and done then
    redis.call('ZREM', K_WORKERS, w)
    redis.call('DEL', k_worker(w), k_worker_wake(w), k_worker_active(w))
    reaped[#reaped + 1] = w
  end
end
local parked = redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', now, 'LIMIT', 0,
  math.max(limit - n_recovered, 0))
for _, id in ipairs(parked) do
  redis.call('ZREM', K_LEASES, id)
  if redis.call('HGET', k_task(id), 'state') == 'running' then recover_one(id) end
end
for _, w in ipairs(reaped) do out[#out + 1] = w end
emit()
table.insert(out, 1, #reaped)
table.insert(out, 1, n_recovered)
return out
