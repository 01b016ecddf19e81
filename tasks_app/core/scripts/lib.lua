-- Shared helpers, prepended (after the generated key and config header) to
-- every script. Timestamps are milliseconds from the Redis server clock, so
-- every host agrees on lease expiry and due times.
redis.replicate_commands()

local PRIORITY_NAMES = {['0'] = 'low', ['1'] = 'normal', ['2'] = 'high', ['3'] = 'critical'}

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Microseconds as an exact integer string (Lua numbers print with 14 digits).
local function now_us()
  local t = redis.call('TIME')
  return string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
end

-- Milliseconds since the epoch as ISO-8601 UTC ending in Z (days-to-civil, H. Hinnant).
local function iso(ms)
  local s = math.floor(ms / 1000)
  local days = math.floor(s / 86400)
  local rem = s - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d, math.floor(rem / 3600),
    math.floor(rem % 3600 / 60), rem % 60, ms % 1000)
end

-- Live events go to the Channels group (channels-redis pub/sub layer, JSON
-- serializer), in the same atomic step as the change they report, and are
-- built only while some web process is subscribed.
local LISTENING = nil
local function listening()
  if LISTENING == nil then
    LISTENING = CFG_EVENTS_CHANNEL ~= '' and
      redis.call('PUBSUB', 'NUMSUB', CFG_EVENTS_CHANNEL)[2] > 0
  end
  return LISTENING
end

local function emit(events)
  if #events > 0 then
    redis.call('PUBLISH', CFG_EVENTS_CHANNEL,
      cjson.encode({type = 'events.batch', events = events}))
  end
end

-- owner (the task's creating principal, or nil/false when it has none) is for the
-- web tier's visibility filter; the hub strips it before a client sees the event.
local function task_event(kind, now, id, ttype, p, extra, owner)
  local data = {task_id = id, type = ttype, priority = PRIORITY_NAMES[tostring(p)]}
  for k, v in pairs(extra or {}) do data[k] = v end
  if owner then data.owner = owner end
  return {type = kind, timestamp = iso(now), data = data}
end

-- A fencing token: the clock in µs, then the counter, so a counter rolled back by
-- a Redis crash (AOF everysec) can never hand out a token that was used before.
local function new_fence()
  return now_us() .. '.' .. redis.call('INCR', K_FENCE)
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

-- failed | dead_letter -> pending at the back of its queue: attempts reset, the last
-- attempt's traces cleared, the dead-letter entry (if any) deleted, the record kept.
local function rerun(id, p, now)
  local tk = k_task(id)
  local mid = redis.call('HGET', tk, 'dlq_id')
  if mid then redis.call('XDEL', K_DLQ, mid) end
  redis.call('PERSIST', tk)
  redis.call('HSET', tk, 'attempts', 0)
  redis.call('HDEL', tk, 'error', 'dlq_id', 'dlq_reason', 'dead_at', 'worker_id',
    'started_at', 'completed_at', 'result', 'next_retry_at')
  make_pending(id, p, now, nil)
end

-- The task id a dead-letter stream entry names (nil if it names none).
local function entry_task_id(e)
  local fields = e[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'task_id' then return fields[i + 1] end
  end
  return nil
end

-- Delete a dead task's record if it still belongs to dead-letter entry `mid` (a task
-- retried and dead again belongs to a newer entry).
local function drop_dead_record(id, mid)
  local tk = k_task(id)
  if redis.call('HGET', tk, 'dlq_id') == mid then redis.call('DEL', tk) end
end

-- The 'all' mode of the DLQ scripts: remove the oldest dead-letter entries, up to `batch`
-- of them and none newer than entry id `last`; visit(task_id, entry_id) runs for each
-- entry that names a task, before the entry is removed.
-- Returns the entries read and the entries removed.
local function walk_dlq(batch, last, visit)
  local entries = redis.call('XRANGE', K_DLQ, '-', last, 'COUNT', batch)
  local removed = 0
  for _, e in ipairs(entries) do
    local id = entry_task_id(e)
    if id then visit(id, e[1]) end
    removed = removed + redis.call('XDEL', K_DLQ, e[1])
  end
  return #entries, removed
end

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

-- running -> pending at its old place in line, the attempt not counted.
local function put_back(id, worker, now)
  local tk = k_task(id)
  release_lease(id, worker)
  local f = redis.call('HMGET', tk, 'priority', 'seq')
  redis.call('HINCRBY', tk, 'attempts', -1)
  redis.call('HDEL', tk, 'worker_id', 'started_at')
  make_pending(id, f[1], now, f[2])
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
-- Appends the attempt's events (task.failed, then task.retrying or
-- task.dead_lettered) to `events`.
-- Returns {new_state, next_retry_at or dlq message id or '', type, priority,
-- attempts, worker_id}.
local function fail_attempt(id, now, err, kind, events)
  local tk = k_task(id)
  local f = redis.call('HMGET', tk, 'attempts', 'max_retries', 'priority', 'worker_id', 'type',
    'owner')
  local attempts, max_retries, p, worker, ttype = tonumber(f[1]), tonumber(f[2]), f[3], f[4], f[5]
  release_lease(id, worker)
  local state, extra
  if kind == 'permanent' then
    redis.call('HSET', tk, 'error', err)
    finish(tk, 'failed', now)
    count('completed', ttype, 'failed')
    state, extra = 'failed', ''
  elseif attempts <= max_retries then
    count('retries', ttype)
    local due = now + backoff_ms(attempts)
    redis.call('ZADD', k_delayed(p), due, id)
    redis.call('HSET', tk, 'state', 'retrying', 'error', err, 'next_retry_at', due,
      'updated_at', now)
    redis.call('LPUSH', K_SCHEDULE_WAKE, '1')
    redis.call('LTRIM', K_SCHEDULE_WAKE, 0, 0)
    state, extra = 'retrying', tostring(due)
  else
    count('completed', ttype, 'dead_letter')
    state, extra = 'dead_letter', dead_letter(id, now, err, 'max retries exceeded')
  end
  if not listening() then
    return {state, extra, ttype, p, attempts, worker}
  end
  events[#events + 1] = task_event('task.failed', now, id, ttype, p, {error = err,
    attempt = attempts, will_retry = state == 'retrying', state = state, worker_id = worker},
    f[6])
  if state == 'retrying' then
    events[#events + 1] = task_event('task.retrying', now, id, ttype, p,
      {attempt = attempts, next_retry_at = iso(tonumber(extra))}, f[6])
  elseif state == 'dead_letter' then
    events[#events + 1] = task_event('task.dead_lettered', now, id, ttype, p,
      {error = err, reason = 'max retries exceeded', message_id = extra}, f[6])
  end
  return {state, extra, ttype, p, attempts, worker}
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

-- Delete one dead-letter stream entry e = {message id, fields} and the task record it
-- names, unless that record has moved on (retried, and dead again under a newer entry).
-- Returns 1 when the entry was deleted, else 0.
local function drop_dead_entry(e)
  local id = entry_task_id(e)
  if id then drop_dead_record(id, e[1]) end
  return redis.call('XDEL', K_DLQ, e[1])
end
