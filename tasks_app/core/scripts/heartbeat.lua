-- heartbeat: register or refresh a worker and renew the leases of the tasks
-- it is running.  A lease is renewed only while the fence still matches; a
-- changed fence means the lease was taken over (recovered) and is reported.
-- A task that just finished (same fence, no longer running) is neither.
-- KEYS[1]: the worker registry
-- ARGV: worker_id, n_fields, field, value, ..., then (task id, fence) pairs
-- Returns: {paused (0|1), ids whose lease this worker lost...}
local worker = ARGV[1]
local nf = tonumber(ARGV[2])
local wk = k_worker(worker)
local now = now_ms()
local fields = {}
for i = 3, 2 + nf * 2 do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', wk, 'id', worker, 'last_heartbeat', now, unpack(fields))
redis.call('PEXPIRE', wk, CFG_HEARTBEAT_TIMEOUT_MS * 2)
redis.call('ZADD', K_WORKERS, now, worker)
local out = {redis.call('HGET', wk, 'paused') == '1' and 1 or 0}
for i = 3 + nf * 2, #ARGV, 2 do
  local id, fence = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', k_task(id), 'state', 'fence')
  if f[2] ~= fence then
    out[#out + 1] = id
  elseif f[1] == 'running' then
    redis.call('ZADD', K_LEASES, now + CFG_LEASE_MS, id)
  end
end
return out
