-- control: pause or resume a worker or a priority queue.
-- KEYS[1]: the worker registry
-- ARGV: target ('worker' | 'queue'), id (worker id, or priority, or 'q': the shard's whole
--   queue), action ('pause' | 'resume')
-- Returns: {'ok'}.  Errors: TQ:WORKER_NOT_FOUND.
local target, id, action = ARGV[1], ARGV[2], ARGV[3]
if target == 'queue' then
  if action == 'pause' then
    redis.call('SADD', K_PAUSED, id)
  else
    redis.call('SREM', K_PAUSED, id)
  end
  -- Every registered worker's record carries the paused priorities, so a dequeue checks
  -- them in the one read it makes (a worker registering later copies them in its beat).
  local pq = redis.call('SMEMBERS', K_PAUSED)
  table.sort(pq)
  pq = ',' .. table.concat(pq, ',') .. ','
  for _, w in ipairs(redis.call('ZRANGE', K_WORKERS, 0, -1)) do
    if redis.call('EXISTS', k_worker(w)) == 1 then
      redis.call('HSET', k_worker(w), 'pq', pq)
    end
  end
  if action ~= 'pause' then
    if id == 'q' then
      for p = 0, 3 do notify(p, CFG_NOTIFY_CAP) end
    else
      notify(id, CFG_NOTIFY_CAP)
    end
  end
  return {'ok'}
end
local wk = k_worker(id)
if redis.call('EXISTS', wk) == 0 then return tq_error('WORKER_NOT_FOUND', id) end
if action == 'pause' then
  redis.call('SADD', K_PAUSED_WORKERS, id)
  redis.call('HSET', wk, 'paused', '1')
else
  redis.call('SREM', K_PAUSED_WORKERS, id)
  redis.call('HDEL', wk, 'paused')
  local wake = k_worker_wake(id)
  local slots = tonumber(redis.call('HGET', wk, 'concurrency') or '1')
  for _ = 1, slots do redis.call('LPUSH', wake, '1') end
  redis.call('PEXPIRE', wake, 60000)
end
return {'ok'}
