-- heartbeat: register or refresh a worker.  The worker's beat is the lease of every
-- attempt it runs (recover.lua): a reported attempt whose fence changed was taken over
-- (recovered) and is reported back; one that waits in K_LEASES because the registry
-- dropped this worker while it was away is taken back.
-- A task that just finished (same fence, no longer running) is neither.
-- A task in the worker's active set that no slot reports, started more than
-- half a lease ago, was taken by a dequeue whose reply never arrived: it is put
-- back (pending, attempt not counted) instead of waiting for its lease to run out.
-- The worker's record also carries what dequeue checks in one read: 'paused' (this
-- worker) and 'pq' (the paused priorities, as ',p,q,'), copied from the pause sets.
-- Every beat folds the pending sets of the old layout (one per priority) into the single
-- pending set, so an upgrade never strands a task, even one enqueued by a producer that
-- still runs the previous release.
-- KEYS[1]: the worker registry
-- ARGV: worker_id, first ('1' on a worker process's first beat), n_fields,
--   field, value, ..., then (task id, fence) pairs
-- On the first beat, tasks still running under this worker id belong to an
-- earlier process with the same id that died: they fail as 'worker lost'
-- (counted, new fence), as the recoverer would fail them at lease expiry.
-- Returns: {paused (0|1), n_lost, 'id fence' of each attempt whose lease this worker lost...,
--   orphaned ids put back...}
local worker = ARGV[1]
local first = ARGV[2] == '1'
local nf = tonumber(ARGV[3])
local wk = k_worker(worker)
local now = now_ms()
for p = 0, 3 do
  local old = PREFIX .. 'pending:' .. p
  if redis.call('EXISTS', old) == 1 then
    local items = redis.call('ZRANGE', old, 0, 999, 'WITHSCORES')
    while items[1] do
      for i = 1, #items, 2 do
        redis.call('ZADD', K_PENDING, pending_score(p, items[i + 1]), items[i])
      end
      redis.call('ZREMRANGEBYRANK', old, 0, #items / 2 - 1)
      items = redis.call('ZRANGE', old, 0, 999, 'WITHSCORES')
    end
  end
end
local fields = {}
for i = 4, 3 + nf * 2 do fields[#fields + 1] = ARGV[i] end
local paused = redis.call('SISMEMBER', K_PAUSED_WORKERS, worker)
local pq = redis.call('SMEMBERS', K_PAUSED)
table.sort(pq)
redis.call('HSET', wk, 'id', worker, 'last_heartbeat', now, 'paused', paused == 1 and '1' or '0',
  'pq', ',' .. table.concat(pq, ',') .. ',', unpack(fields))
redis.call('PEXPIRE', wk, CFG_HEARTBEAT_TIMEOUT_MS * 2)
redis.call('ZADD', K_WORKERS, now, worker)
local out = {paused, 0}
local reported = {}
for i = 4 + nf * 2, #ARGV, 2 do
  local id, fence = ARGV[i], ARGV[i + 1]
  reported[id] = true
  local f = redis.call('HMGET', k_task(id), 'state', 'fence')
  if f[2] ~= fence then
    out[#out + 1] = id .. ' ' .. fence
  elseif f[1] == 'running' and redis.call('ZREM', K_LEASES, id) == 1 then
    redis.call('SADD', k_worker_active(worker), id)
  end
end
out[2] = #out - 2
for _, id in ipairs(redis.call('SMEMBERS', k_worker_active(worker))) do
  if not reported[id] then
    local f = redis.call('HMGET', k_task(id), 'state', 'worker_id', 'started_at')
    if f[1] ~= 'running' or f[2] ~= worker then
      redis.call('SREM', k_worker_active(worker), id)
    elseif first then
      redis.call('HSET', k_task(id), 'fence', new_fence())
      fail_attempt(id, now, 'worker lost', 'retry')
    elseif now - tonumber(f[3]) > CFG_LEASE_MS / 2 then
      put_back(id, worker, now)
      out[#out + 1] = id
    end
  end
end
emit()
return out
