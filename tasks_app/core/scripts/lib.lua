-- Shared helpers, prepended (after the generated key and config header) to
-- every script. Timestamps are milliseconds from the Redis server clock, so
-- every host agrees on lease expiry and due times.
redis.replicate_commands()

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Microseconds as an exact integer string (Lua numbers print with 14 digits).
local function now_us()
  local t = redis.call('TIME')
  return string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
end

local function tq_error(code, detail)
  return redis.error_reply('TQ:' .. code .. ' ' .. (detail or ''))
end

-- Push up to n wake-up tokens for idle workers serving priority p.
local function notify(p, n)
  local key = k_notify(p)
  local room = CFG_NOTIFY_CAP - redis.call('LLEN', key)
  for _ = 1, math.min(n, room) do
    redis.call('LPUSH', key, '1')
  end
end

-- Put a task at its place in the pending set of its priority.
-- seq=nil gives it a fresh sequence number: the back of the queue.
local function make_pending(id, p, now, seq)
  if not seq then
    seq = redis.call('INCR', K_SEQ)
  end
  redis.call('ZADD', k_pending(p), seq, id)
  redis.call('HSET', k_task(id), 'state', 'pending', 'seq', seq, 'enqueued_us', now_us(),
    'updated_at', now)
  notify(p, 1)
end

local PRIORITY_NAMES = {['0'] = 'low', ['1'] = 'normal', ['2'] = 'high', ['3'] = 'critical'}

-- Metrics: counters and histograms in one hash (see core/metrics.py).
local function count(name, a, b, n)
  redis.call('HINCRBY', K_METRICS, 'c\t' .. name .. '\t' .. a .. (b and ('\t' .. b) or ''),
    n or 1)
end

-- Observe seconds in histogram `name` with one label; sums are kept in µs.
local function observe(name, bounds, label, seconds)
  local index = #bounds
  for i, bound in ipairs(bounds) do
    if seconds <= bound then index = i - 1; break end
  end
  local tail = name .. '\t' .. label
  redis.call('HINCRBY', K_METRICS, 'h\t' .. tail .. '\t' .. index, 1)
  redis.call('HINCRBY', K_METRICS, 'hs\t' .. tail, math.floor(seconds * 1000000))
  redis.call('HINCRBY', K_METRICS, 'hc\t' .. tail, 1)
end

local function release_lease(id, worker)
  redis.call('ZREM', K_LEASES, id)
  if worker then
    redis.call('SREM', k_worker_active(worker), id)
  end
end

local function finish(tk, state, now)
  redis.call('HSET', tk, 'state', state, 'completed_at', now, 'updated_at', now)
  redis.call('PEXPIRE', tk, CFG_RESULT_TTL_MS)
end

-- Exponential backoff with equal jitter: half fixed, half random.
local function backoff_ms(attempt)
  local delay = CFG_BACKOFF_BASE_MS * (CFG_BACKOFF_FACTOR ^ (attempt - 1))
  delay = math.min(delay, CFG_BACKOFF_MAX_MS)
  return math.floor(delay / 2 + math.random() * delay / 2)
end

local function dead_letter(id, now, err, reason)
  local tk = k_task(id)
  local f = redis.call('HMGET', tk, 'type', 'priority', 'attempts')
  local mid = redis.call('XADD', K_DLQ, '*', 'task_id', id, 'type', f[1], 'priority', f[2],
    'reason', reason, 'error', err, 'attempts', f[3])
  redis.call('HSET', tk, 'state', 'dead_letter', 'error', err, 'dlq_id', mid,
    'dlq_reason', reason, 'dead_at', now, 'updated_at', now)
  redis.call('HDEL', tk, 'next_retry_at')
  redis.call('PERSIST', tk)
  return mid
end

-- End a running attempt that failed. kind is 'retry' (the retry policy
-- applies) or 'permanent' (the non-retryable error: straight to failed).
-- Returns {new_state, next_retry_at or dlq message id or '', type, priority,
-- attempts, worker_id}.
local function fail_attempt(id, now, err, kind)
  local tk = k_task(id)
  local f = redis.call('HMGET', tk, 'attempts', 'max_retries', 'priority', 'worker_id', 'type')
  local attempts, max_retries, p, worker, ttype = tonumber(f[1]), tonumber(f[2]), f[3], f[4], f[5]
  release_lease(id, worker)
  if kind == 'permanent' then
    redis.call('HSET', tk, 'error', err)
    finish(tk, 'failed', now)
    count('completed', ttype, 'failed')
    return {'failed', '', ttype, p, attempts, worker}
  end
  if attempts <= max_retries then
    count('retries', ttype)
    local due = now + backoff_ms(attempts)
    redis.call('ZADD', k_delayed(p), due, id)
    redis.call('HSET', tk, 'state', 'retrying', 'error', err, 'next_retry_at', due,
      'updated_at', now)
    redis.call('LPUSH', K_SCHEDULE_WAKE, '1')
    redis.call('LTRIM', K_SCHEDULE_WAKE, 0, 0)
    return {'retrying', tostring(due), ttype, p, attempts, worker}
  end
  count('completed', ttype, 'dead_letter')
  local mid = dead_letter(id, now, err, 'max retries exceeded')
  return {'dead_letter', mid, ttype, p, attempts, worker}
end

-- Check that (worker, fence) still owns the running attempt of task id.
-- Returns the task's state when the fence matches, or an error reply.
local function check_fence(id, fence)
  local f = redis.call('HMGET', k_task(id), 'state', 'fence')
  if not f[1] then
    return nil, tq_error('NOT_FOUND', id)
  end
  if f[2] ~= fence then
    return nil, tq_error('STALE', id)
  end
  return f[1], nil
end
