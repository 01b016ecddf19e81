-- heartbeat: register or refresh a worker and renew the leases of the tasks
-- it is running.  A lease is renewed only while the fence still matches; a
-- changed fence means the lease was taken over (recovered) and is reported.
-- A task that just finished (same fence, no longer running) is neither.
-- A task in the worker's active set that no slot reports, started more than
-- half a lease ago, was taken by a dequeue whose reply never arrived: it is put
-- back (pending, attempt not counted) instead of waiting for its lease to run out.
-- KEYS[1]: the worker registry
-- ARGV: worker_id, n_fields, field, value, ..., then (task id, fence) pairs
-- Returns: {paused (0|1), n_lost, ids whose lease this worker lost..., orphaned ids put back...}
local worker = ARGV[1]
local nf = tonumber(ARGV[2])
local wk = k_worker(worker)
local now = now_ms()
local fields = {}
for i = 3, 2 + nf * 2 do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', wk, 'id', worker, 'last_heartbeat', now, unpack(fields))
redis.call('PEXPIRE', wk, CFG_HEARTBEAT_TIMEOUT_MS * 2)
redis.call('ZADD', K_WORKERS, now, worker)
local paused = redis.call('SISMEMBER', K_PAUSED_WORKERS, worker)
if paused == 1 then
  redis.call('HSET', wk, 'paused', '1')
else
  redis.call('HDEL', wk, 'paused')
end
local out = {paused, 0}
local reported = {}
for i = 3 + nf * 2, #ARGV, 2 do
  local id, fence = ARGV[i], ARGV[i + 1]
  reported[id] = true
  local f = redis.call('HMGET', k_task(id), 'state', 'fence')
  if f[2] ~= fence then
    out[#out + 1] = id
  elseif f[1] == 'running' then
    redis.call('ZADD', K_LEASES, now + CFG_LEASE_MS, id)
  end
end
out[2] = #out - 2
for _, id in ipairs(redis.call('SMEMBERS', k_worker_active(worker))) do
  if not reported[id] then
    local f = redis.call('HMGET', k_task(id), 'state', 'worker_id', 'started_at')
    if f[1] ~= 'running' or f[2] ~= worker then
      redis.call('SREM', k_worker_active(worker), id)
    elseif now - tonumber(f[3]) > CFG_LEASE_MS / 2 then
      put_back(id, worker, now)
      out[#out + 1] = id
    end
  end
end
return out
