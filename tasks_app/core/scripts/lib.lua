-- Shared helpers: the body of the function library (Redis 7+), or prepended to every
-- script (EVAL, on Redis 6.2), after the generated key and config header.  Timestamps
-- are milliseconds from the Redis server clock, so every host agrees on lease expiry and
-- due times.  Per-call state (the clock, queued events) is reset by `fresh(KEYS[1])` at
-- the start of every call: in a library it would otherwise outlive the call.  It also
-- sets the key names of the shard the call's first key belongs to (`set_prefix`).

local PRIORITY_NAMES = {['0'] = 'low', ['1'] = 'normal', ['2'] = 'high', ['3'] = 'critical'}

-- Workflow hooks of the transitions (defined in the workflow section below).
local wf_done, wf_failed, wf_resume, wf_cancel

-- The Redis clock, read once per script (one TIME): milliseconds as a number and
-- microseconds as an exact integer string (Lua numbers print with 14 digits).
local CLOCK_MS, CLOCK_US = nil, nil
local function clock()
  if not CLOCK_MS then
    local t = redis.call('TIME')
    CLOCK_US = t[1] .. string.format('%06d', tonumber(t[2]))
    CLOCK_MS = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return CLOCK_MS, CLOCK_US
end

local function now_ms()
  return (clock())
end

local EVENTS = {}
local COUNTS, HISTS = {}, {}
-- per call: see the per-type limits below
local LIMITS_ON, LIMIT_SPECS, RUNNING, NONE_PARKED = nil, {}, {}, {}
local THROTTLED_EVENTS = 0  -- task.throttled rows this call (see admit)
local MAX_THROTTLED_EVENTS = 16
local function fresh(key)
  set_prefix(key)
  CLOCK_MS, CLOCK_US = nil, nil
  LIMITS_ON, LIMIT_SPECS, RUNNING, NONE_PARKED = nil, {}, {}, {}
  THROTTLED_EVENTS = 0
  EVENTS = {}
  COUNTS, HISTS = {}, {}
end

local function now_us()
  local _, us = clock()
  return us
end

-- The pending set holds every priority: score = band(priority) + sequence, where the
-- highest priority has the lowest band, so ZPOPMIN takes the highest priority first and
-- FIFO within it.  Scores stay exact integers below 2^53 (sequences below 2^50).
local BAND = 1125899906842624
local function pending_score(p, seq)
  return string.format('%.0f', (3 - tonumber(p)) * BAND + tonumber(seq))
end
local BAND_PRIORITY = {[0] = '3', [1] = '2', [2] = '1', [3] = '0'}
local function band_low(p) return string.format('%.0f', (3 - tonumber(p)) * BAND) end
local function band_high(p) return string.format('%.0f', (4 - tonumber(p)) * BAND - 1) end

-- Live events go to the Channels group (channels-redis pub/sub layer), in the same atomic
-- step as the change they report.  They travel compact: one row per event,
-- {kind, task id, type, priority, owner or '', extras...} (see core/events.py, which
-- builds the JSON events in the web process).  PUBLISH to a channel nobody listens on
-- costs next to nothing, so there is no subscriber check.
local function event(row)
  if CFG_EVENTS_CHANNEL ~= '' then EVENTS[#EVENTS + 1] = row end
end

-- End of every script that changes something: apply the metric deltas it collected (one
-- HINCRBY per distinct field, however many tasks the call handled) and publish its events.
local function emit()
  for name, by_a in pairs(COUNTS) do
    for a, by_b in pairs(by_a) do
      for b, n in pairs(by_b) do
        redis.call('HINCRBY', K_METRICS,
          'c\t' .. name .. '\t' .. a .. (b ~= '' and ('\t' .. b) or ''), n)
      end
    end
  end
  for name, by_label in pairs(HISTS) do
    for label, h in pairs(by_label) do
      local tail = name .. '\t' .. label
      for index, n in pairs(h.buckets) do
        redis.call('HINCRBY', K_METRICS, 'h\t' .. tail .. '\t' .. index, n)
      end
      redis.call('HINCRBY', K_METRICS, 'hs\t' .. tail, h.sum)
      redis.call('HINCRBY', K_METRICS, 'hc\t' .. tail, h.n)
    end
  end
  COUNTS, HISTS = {}, {}
  if #EVENTS > 0 then
    redis.call('PUBLISH', CFG_EVENTS_CHANNEL,
      cjson.encode({type = 'events.compact', at = now_ms(), q = QUEUE, rows = EVENTS}))
    EVENTS = {}
  end
end

-- A fencing token for a recovered or taken-over attempt: the clock in µs, then the counter,
-- so a counter rolled back by a Redis crash (AOF everysec) can never hand out a token
-- that was used before.  (A dequeue's token is cheaper: see take.)
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

-- Put a task at its place in the pending set.
-- seq=nil gives it a fresh sequence number: the back of the queue of its priority.
local function make_pending(id, p, now, seq)
  if not seq then
    seq = redis.call('INCR', K_SEQ)
  end
  redis.call('ZADD', K_PENDING, pending_score(p, seq), id)
  redis.call('HSET', k_task(id), 'state', 'pending', 'seq', seq, 'enqueued_us', now_us(),
    'updated_at', now)
  notify(p, 1)
end

-- failed | dead_letter -> pending at the back of its queue: attempts reset, the last
-- attempt's traces cleared, the dead-letter entry (if any) deleted, the record kept.
local function repend(id, p, now)
  local tk = k_task(id)
  local mid = redis.call('HGET', tk, 'dlq_id')
  if mid then redis.call('XDEL', K_DLQ, mid) end
  redis.call('PERSIST', tk)
  redis.call('HSET', tk, 'attempts', 0)
  redis.call('HDEL', tk, 'error', 'dlq_id', 'dlq_reason', 'dead_at', 'worker_id',
    'started_at', 'completed_at', 'result', 'next_retry_at')
  make_pending(id, p, now, nil)
end

-- The same for a retry asked by an operator: a workflow step's retry may resume its
-- workflow (wf_resume).
local function rerun(id, p, now)
  repend(id, p, now)
  local wf = redis.call('HMGET', k_task(id), 'wf', 'wfs')
  if wf[1] then wf_resume(wf[1], now) end
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

-- Metrics: counters and histograms in one hash (see core/metrics.py), counted in the
-- same script as the transition, summed per field over the call in Lua tables (no string
-- is built per task) and applied by emit(), one HINCRBY per distinct field.
local function slot_of(t, k)
  local v = t[k]
  if not v then v = {}; t[k] = v end
  return v
end

local function count(name, a, b, n)
  local by_b = slot_of(slot_of(COUNTS, name), a)
  b = b or ''
  by_b[b] = (by_b[b] or 0) + (n or 1)
end

-- Observe seconds in histogram `name` with one label; sums are kept in µs.
local function observe(name, bounds, label, seconds)
  local index = #bounds
  for i, bound in ipairs(bounds) do
    if seconds <= bound then index = i - 1; break end
  end
  local by_label = slot_of(HISTS, name)
  local h = by_label[label]
  if not h then
    h = {n = 0, sum = 0, buckets = {}}
    by_label[label] = h
  end
  h.n = h.n + 1
  h.sum = h.sum + math.floor(seconds * 1000000)
  h.buckets[index] = (h.buckets[index] or 0) + 1
end

-- Per-type limits (see core/limits.py).  K_LIMITS: type -> 'concurrency|n|window_ms' (an
-- empty part: no such limit); K_RUNNING: type -> attempts whose start was counted (the
-- task record's 'lim'); K_TOKENS: type -> 'tokens|ms', a token bucket of capacity n
-- refilled at n per window; k_parked(type) and K_PARKED: pending tasks set aside while
-- their type is at its limit, scored as in K_PENDING; K_PARKED_DUE: rate-limited types
-- with parked tasks, scored by when their next token is due.  A shard without limits pays
-- one EXISTS per call that takes or ends attempts.
local function limits_on()
  if LIMITS_ON == nil then LIMITS_ON = redis.call('EXISTS', K_LIMITS, K_RUNNING) > 0 end
  return LIMITS_ON
end

-- The limit of type t, {c, n, w} (nil fields: no such limit), or false; read once per call.
local function limit_of(t)
  local s = LIMIT_SPECS[t]
  if s == nil then
    local raw = redis.call('HGET', K_LIMITS, t)
    s = false
    if raw then
      local c, n, w = string.match(raw, '^(%d*)|(%d*)|(%d*)$')
      s = {c = tonumber(c), n = tonumber(n), w = tonumber(w)}
    end
    LIMIT_SPECS[t] = s
  end
  return s
end

-- The tokens type t has at `now` (its bucket starts full).
local function tokens(t, s, now)
  local raw = redis.call('HGET', K_TOKENS, t)
  if not raw then return s.n end
  local have, at = string.match(raw, '^([^|]*)|(%d+)$')
  return math.min(s.n, tonumber(have) + math.max(now - tonumber(at), 0) * s.n / s.w)
end

-- Type t's running count: read once per call, then kept by the HINCRBYs of the call.
local function running_of(t)
  if RUNNING[t] == nil then RUNNING[t] = tonumber(redis.call('HGET', K_RUNNING, t) or '0') end
  return RUNNING[t]
end

-- Note when type t's next token is due (promote.lua moves its parked tasks back then).
local function due_later(t, s, have, now)
  local due = now + math.ceil((1 - have) * s.w / s.n)
  if redis.call('ZADD', K_PARKED_DUE, 'NX', due, t) == 1 then
    redis.call('LPUSH', K_SCHEDULE_WAKE, '1')
    redis.call('LTRIM', K_SCHEDULE_WAKE, 0, 0)
  end
end

-- take's check of a popped pending task of limited type t: true when it may start, with
-- a second true when its start is counted (running count, token; take then writes 'lim'
-- on its record); else it is parked at its place in line (it stays pending) and a
-- 'throttled' event says which limit held it (owner: the task's, for the event): at most
-- MAX_THROTTLED_EVENTS a call, as one take may park thousands (the metric counts all).
local function admit(id, t, p, owner)
  local s = limit_of(t)
  if not s then return true, false end
  local now = now_ms()
  local have = s.n and tokens(t, s, now)
  local busy = s.c and running_of(t) >= s.c
  if busy or (have and have < 1) then
    local score = pending_score(p, redis.call('HGET', k_task(id), 'seq'))
    redis.call('ZADD', k_parked(t), score, id)
    redis.call('ZADD', K_PARKED, score, id)
    NONE_PARKED[t] = nil
    count('throttled', t)
    if THROTTLED_EVENTS < MAX_THROTTLED_EVENTS then
      THROTTLED_EVENTS = THROTTLED_EVENTS + 1
      event({'throttled', id, t, p, owner or '', busy and 'concurrency' or 'rate'})
    end
    if have and have < 1 then due_later(t, s, have, now) end
    return false, false
  end
  if have then redis.call('HSET', K_TOKENS, t, (have - 1) .. '|' .. now) end
  RUNNING[t] = redis.call('HINCRBY', K_RUNNING, t, 1)
  return true, true
end

-- Move the head of type t's parked tasks back into pending (kept scores), as many as may
-- start now (with `all`, or when t has no limit any more: up to 1000); when a token is
-- what the rest wait for, note when it is due.  Returns how many moved.
local function wake_parked(t, now, all)
  if NONE_PARKED[t] then return 0 end  -- found empty earlier in this call
  local key = k_parked(t)
  local s = not all and limit_of(t)
  local n = 1000
  local have = s and s.n and tokens(t, s, now)
  if s and s.c then n = math.min(n, s.c - running_of(t)) end
  if have then n = math.min(n, math.floor(have)) end
  local items = n > 0 and redis.call('ZRANGE', key, 0, n - 1, 'WITHSCORES') or {}
  for i = 1, #items, 2 do
    redis.call('ZADD', K_PENDING, items[i + 1], items[i])
    redis.call('ZREM', K_PARKED, items[i])
    notify(BAND_PRIORITY[math.floor(tonumber(items[i + 1]) / BAND)], 1)
  end
  local moved = #items / 2
  if n > 0 and moved == 0 then NONE_PARKED[t] = true end
  if moved > 0 then redis.call('ZREMRANGEBYRANK', key, 0, moved - 1) end
  if have and have - moved < 1 and redis.call('EXISTS', key) == 1 then
    due_later(t, s, have - moved, now)
  end
  return moved
end

-- An attempt leaves running: if its start was counted, its type's count goes down and
-- the parked tasks that may now start go back in line.
local function limit_release(id, now)
  if not limits_on() then return end
  local tk = k_task(id)
  if redis.call('HDEL', tk, 'lim') == 0 then return end
  local t = redis.call('HGET', tk, 'type')
  RUNNING[t] = redis.call('HINCRBY', K_RUNNING, t, -1)
  if RUNNING[t] <= 0 then
    redis.call('HDEL', K_RUNNING, t)
    RUNNING[t] = 0
  end
  wake_parked(t, now or now_ms())
end

-- A pending task leaves the queue (cancel, purge): out of its type's parked set too.
local function drop_parked(id, t)
  if redis.call('ZREM', K_PARKED, id) == 1 and t then redis.call('ZREM', k_parked(t), id) end
end

-- The rate-limited types whose next token is due: their parked tasks go back in line.
-- Returns when the next one is due (ms), or nil.
local function wake_due_types(now)
  for _, t in ipairs(redis.call('ZRANGEBYSCORE', K_PARKED_DUE, '-inf', now)) do
    redis.call('ZREM', K_PARKED_DUE, t)
    wake_parked(t, now)
  end
  local first = redis.call('ZRANGE', K_PARKED_DUE, 0, 0, 'WITHSCORES')
  return first[2] and tonumber(first[2])
end
-- End of per-type limits.

-- A running attempt is held by its worker's active set; its lease is the worker's heartbeat
-- (see recover.lua).  A task of a worker that left the registry waits in K_LEASES instead,
-- where recover (or a late heartbeat of that worker) finds it.
local function release_lease(id, worker)
  if worker then
    redis.call('SREM', k_worker_active(worker), id)
  end
end

-- running -> pending at its old place in line, the attempt not counted.  The task gets a
-- new fence: a slot that still holds the old attempt (its dequeue reply came too late, or
-- its worker's report did) can neither record it nor keep it alive, and its supervisor,
-- told at the next heartbeat that the fence changed, stops it.
local function put_back(id, worker, now)
  local tk = k_task(id)
  release_lease(id, worker)
  local f = redis.call('HMGET', tk, 'priority', 'seq', 'type', 'owner', 'fence')
  redis.call('HINCRBY', tk, 'attempts', -1)
  redis.call('HDEL', tk, 'worker_id', 'started_at')
  redis.call('HSET', tk, 'fence', new_fence(), 'returned_fence', f[5] or '')
  limit_release(id, now)
  make_pending(id, f[1], now, f[2])
  event({'requeued', id, f[3], f[1], f[4] or ''})
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
-- Queues the attempt's events (task.failed, then task.retrying or task.dead_lettered).
-- Returns {new_state, next_retry_at or dlq message id or '', type, priority,
-- attempts, worker_id}.
local function fail_attempt(id, now, err, kind)
  local tk = k_task(id)
  local f = redis.call('HMGET', tk, 'attempts', 'max_retries', 'priority', 'worker_id', 'type',
    'owner', 'wf', 'wfs')
  local attempts, max_retries, p, worker, ttype = tonumber(f[1]), tonumber(f[2]), f[3], f[4], f[5]
  release_lease(id, worker)
  limit_release(id, now)
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
  local owner = f[6] or ''
  event({'failed', id, ttype, p, owner, err, attempts, state, worker or ''})
  if state == 'retrying' then
    event({'retrying', id, ttype, p, owner, attempts, tonumber(extra)})
  elseif state == 'dead_letter' then
    event({'dead_lettered', id, ttype, p, owner, err, 'max retries exceeded', extra})
  end
  if f[7] and state ~= 'retrying' then wf_failed(f[7], f[8], now) end
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

-- running -> completed for the attempt (id, fence) of `worker`, counted with its run time.
-- With a `released` table the id is appended to it for the caller to take out of the
-- worker's active set (one SREM for a batch) instead of at once.
-- Returns {'ok', started_at, completed_at}, {'already'} (this attempt was acknowledged
-- before: a retried call after a lost reply), {'stale'} (the lease was taken over) or
-- {'missing'}.
local function complete(id, worker, fence, result, spent, released)
  local tk = k_task(id)
  local f = redis.call('HMGET', tk, 'state', 'fence', 'started_at', 'error', 'type', 'priority',
    'attempts', 'owner', 'wf', 'wfs')
  if not f[1] then return {'missing'} end
  if f[2] ~= fence then return {'stale'} end
  if f[1] == 'completed' then return {'already'} end
  if f[1] ~= 'running' then return {'stale'} end
  local now = now_ms()
  if released then released[#released + 1] = id else release_lease(id, worker) end
  limit_release(id, now)
  if f[4] then redis.call('HDEL', tk, 'error') end
  redis.call('HSET', tk, 'result', result, 'state', 'completed', 'completed_at', now,
    'updated_at', now)
  redis.call('PEXPIRE', tk, CFG_RESULT_TTL_MS)
  count('completed', f[5], 'success')
  observe('duration', BUCKETS_DURATION, f[5], tonumber(spent))
  event({'completed', id, f[5], f[6], f[8] or '', worker, tonumber(f[7]), spent})
  if f[9] then wf_done(f[9], f[10], result, now) end
  return {'ok', f[3], now}
end

-- Workflows (chains and groups, core/workflows.py).  A workflow lives in one hash in its
-- queue shard: 'state' ('active', 'completed', 'failed', 'cancelled'), 'left' (steps not
-- yet completed), 'failing' (steps now ended failed or dead-lettered), and per step i:
-- 'id:i' its task id, 's:i' its body (a JSON array: type, payload, priority, max_retries,
-- timeout, metadata), 'w:i' how many steps must still complete before it starts, 'n:i'
-- the steps waiting on it ('j,k'), 'a:i' the shape of its parent results (step numbers in
-- JSON lists, '' for none), and once reached 'r:i' its result, 'd:i' done, 'x:i' (its
-- task was cancelled by the workflow's failure) or 'h:i' (ready while the workflow was
-- not active).  A step's task is created when it becomes ready, in the script that
-- completed the last step it waited on: nothing polls and no crash can fall in between.

-- Create step i's task, pending, with its parents' results filled into its shape.
local function wf_start(wk, i, now)
  local f = redis.call('HMGET', wk, 'id:' .. i, 's:' .. i, 'a:' .. i, 'owner', 'id')
  local b = cjson.decode(f[2])
  local id, ttype, p = f[1], b[1], b[3]
  local fields = {'id', id, 'type', ttype, 'payload', b[2], 'priority', p,
    'max_retries', b[4], 'timeout', b[5], 'metadata', b[6], 'attempts', 0,
    'created_at', now, 'wf', f[5], 'wfs', i}
  if f[4] ~= '' then
    fields[#fields + 1] = 'owner'
    fields[#fields + 1] = f[4]
  end
  if f[3] ~= '' then
    fields[#fields + 1] = 'parents'
    fields[#fields + 1] = (string.gsub(f[3], '%d+', function(d)
      return redis.call('HGET', wk, 'r:' .. d) or 'null'
    end))
  end
  local seq = redis.call('INCR', K_SEQ)
  for _, v in ipairs({'state', 'pending', 'seq', seq, 'enqueued_us', now_us(), 'updated_at', now}) do
    fields[#fields + 1] = v
  end
  redis.call('HSET', k_task(id), unpack(fields))
  redis.call('ZADD', K_PENDING, pending_score(p, seq), id)
  notify(p, 1)
  count('submitted', ttype .. '\t' .. PRIORITY_NAMES[p])
  event({'submitted', id, ttype, p, f[4], 'pending', ''})
end

local function wf_event(wk, kind)
  local f = redis.call('HMGET', wk, 'id', 'owner', 'failed_step')
  event({kind, f[1], '', '', f[2], f[3] or ''})
end

-- The workflow's end: completed and cancelled ones expire with the results; a failed one
-- is kept (a retry of its failed steps may resume it) until it is cancelled.
local function wf_end(wk, state, now)
  redis.call('HSET', wk, 'state', state, 'ended_at', now, 'updated_at', now)
  if state == 'failed' then
    redis.call('PERSIST', wk)
  else
    redis.call('PEXPIRE', wk, CFG_RESULT_TTL_MS)
  end
  count('workflows', state)
  wf_event(wk, 'wf_' .. state)
end

-- Cancel every step whose task exists and has not started (pending, scheduled or
-- retrying), marking it 'x:i' so a resumed workflow can put it back.
local function wf_cancel_unstarted(wk, now)
  local n = tonumber(redis.call('HGET', wk, 'n'))
  for i = 0, n - 1 do
    local id = redis.call('HGET', wk, 'id:' .. i)
    local tk = k_task(id)
    local f = redis.call('HMGET', tk, 'state', 'priority', 'type', 'owner')
    local cancel = true
    if f[1] == 'pending' then
      if redis.call('ZREM', K_PENDING, id) == 0 then drop_parked(id, f[3]) end
    elseif f[1] == 'scheduled' or f[1] == 'retrying' then
      redis.call('ZREM', k_delayed(f[2]), id)
      redis.call('HDEL', tk, 'next_retry_at')
    else
      cancel = false
    end
    if cancel then
      finish(tk, 'cancelled', now)
      redis.call('HSET', wk, 'x:' .. i, 1)
      count('cancelled', f[3])
      event({'cancelled', id, f[3], f[2], f[4] or ''})
    end
  end
end

-- Step i completed with `result`: record it, start the steps that waited on it alone.
wf_done = function(wid, i, result, now)
  local wk = k_workflow(wid)
  local f = redis.call('HMGET', wk, 'state', 'd:' .. i, 'n:' .. i)
  local state = f[1]
  if not state or f[2] then return end
  redis.call('HSET', wk, 'r:' .. i, result, 'd:' .. i, 1, 'updated_at', now)
  -- the result is copied into each step after it: the workflow's copies are bounded
  -- (CFG_WF_MAX_HANDED_ON), else one result could fill Redis, many times over.  Counted
  -- in any state (a failed workflow's held steps get their copies when it resumes); past
  -- the bound the workflow fails at this step and stays failed: the step completed, so no
  -- retry of it takes back the 'failing' it adds, and no retry resumes the workflow.
  local _, after = string.gsub(f[3], '%d+', '')
  if after > 0
      and redis.call('HINCRBY', wk, 'handed', #result * after) > CFG_WF_MAX_HANDED_ON then
    wf_failed(wid, i, now)
    if state == 'active' then state = 'failed' end  -- what it made ready is held
  end
  for j in string.gmatch(f[3], '%d+') do
    if redis.call('HINCRBY', wk, 'w:' .. j, -1) == 0 then
      if state == 'active' then wf_start(wk, j, now) else redis.call('HSET', wk, 'h:' .. j, 1) end
    end
  end
  if redis.call('HINCRBY', wk, 'left', -1) == 0 and state == 'active' then
    wf_end(wk, 'completed', now)
  end
end

-- Step i ended failed or dead_letter: the workflow fails, its unstarted steps cancelled.
wf_failed = function(wid, i, now)
  local wk = k_workflow(wid)
  local state = redis.call('HGET', wk, 'state')
  if not state then return end
  redis.call('HINCRBY', wk, 'failing', 1)
  if state ~= 'active' then return end
  redis.call('HSET', wk, 'failed_step', redis.call('HGET', wk, 'id:' .. i))
  wf_cancel_unstarted(wk, now)
  wf_end(wk, 'failed', now)
end

-- A failed step was put back in line (a DLQ or operator retry): once no step is left
-- failed, the workflow is active again, its cancelled and held steps back in line.
wf_resume = function(wid, now)
  local wk = k_workflow(wid)
  local f = redis.call('HMGET', wk, 'state', 'failing', 'n')
  if not f[1] then return end
  local failing = math.max(tonumber(f[2]) - 1, 0)
  redis.call('HSET', wk, 'failing', failing)
  if f[1] ~= 'failed' or failing > 0 then return end
  redis.call('HSET', wk, 'state', 'active', 'updated_at', now)
  redis.call('HDEL', wk, 'failed_step', 'ended_at')
  for i = 0, tonumber(f[3]) - 1 do
    local g = redis.call('HMGET', wk, 'x:' .. i, 'h:' .. i)
    if g[1] then
      redis.call('HDEL', wk, 'x:' .. i)
      local id = redis.call('HGET', wk, 'id:' .. i)
      repend(id, redis.call('HGET', k_task(id), 'priority'), now)
    end
    if g[2] then
      redis.call('HDEL', wk, 'h:' .. i)
      wf_start(wk, i, now)
    end
  end
  wf_event(wk, 'wf_resumed')
end

-- Cancel a workflow (asked for, or one of its steps was cancelled): its unstarted steps
-- are cancelled; running ones finish, and start nothing after them.
-- Returns the state it had ('completed' and 'cancelled' ones are left alone).
wf_cancel = function(wid, now)
  local wk = k_workflow(wid)
  local state = redis.call('HGET', wk, 'state')
  if state == 'active' or state == 'failed' then
    wf_cancel_unstarted(wk, now)
    wf_end(wk, 'cancelled', now)
  end
  return state
end

-- Take up to n tasks for a worker slot: the highest-priority pending tasks (FIFO within a
-- priority) of the priorities `prios` (strings, highest first) that are not paused, each
-- starting an attempt under a fresh fence (its queue wait observed).
-- Returns {'task', count, then per task the 12 values id, priority, fence, attempts, type,
--   payload, metadata, max_retries, timeout, queue_wait_us, started_at, parent results
--   (a workflow step's, JSON; '' for none)},
--   or {'empty'} (also while the shard's queue is paused), {'paused'} (worker paused),
--   {'unregistered'}.
local function take(worker, prios, n)
  local w = redis.call('HMGET', k_worker(worker), 'id', 'paused', 'pq')
  if not w[1] then return {'unregistered'} end
  if w[2] == '1' then return {'paused'} end
  local open = prios
  if w[3] and w[3] ~= ',,' then  -- some priority, or the whole queue ('q'), is paused
    if string.find(w[3], ',q,', 1, true) then return {'empty'} end
    open = {}
    for _, p in ipairs(prios) do
      if not string.find(w[3], ',' .. p .. ',', 1, true) then open[#open + 1] = p end
    end
  end
  local out = {'task', 0}
  local started = {}
  local now, us = nil, nil
  while #started < n do
    -- The next candidates, (id, priority) pairs, in queue order.
    local batch = {}
    if #open == 4 then
      local popped = redis.call('ZPOPMIN', K_PENDING, n - #started)
      for i = 1, #popped, 2 do
        batch[#batch + 1] = {popped[i], BAND_PRIORITY[math.floor(tonumber(popped[i + 1]) / BAND)]}
      end
    else
      for _, q in ipairs(open) do
        local head = redis.call('ZRANGEBYSCORE', K_PENDING, band_low(q), band_high(q),
          'LIMIT', 0, n - #started)
        if head[1] then
          redis.call('ZREM', K_PENDING, unpack(head))
          for _, id in ipairs(head) do batch[#batch + 1] = {id, q} end
          break
        end
      end
    end
    if not batch[1] then break end
    for _, item in ipairs(batch) do
      local id, p = item[1], item[2]
      local tk = k_task(id)
      local f = redis.call('HMGET', tk, 'state', 'type', 'payload', 'metadata', 'max_retries',
        'timeout', 'enqueued_us', 'attempts', 'owner', 'fence', 'parents')
      -- else a stale entry (the record expired or moved on), or a parked one (see admit)
      local starts, counted = f[1] == 'pending', false
      if starts and limits_on() then starts, counted = admit(id, f[2], p, f[9]) end
      if starts then
        if not now then now, us = clock() end
        local wait = string.format('%.0f', tonumber(us) - tonumber(f[7] or us))
        -- Unique per attempt: the clock, then one more than the last fence's count.
        local fence = us .. '-' .. (tonumber(string.match(f[10] or '', '-(%d+)$') or '0') + 1)
        local attempts = tonumber(f[8]) + 1
        if counted then
          redis.call('HSET', tk, 'state', 'running', 'worker_id', worker, 'started_at', now,
            'updated_at', now, 'fence', fence, 'attempts', attempts, 'wait_us', wait, 'lim', '1')
        else
          redis.call('HSET', tk, 'state', 'running', 'worker_id', worker, 'started_at', now,
            'updated_at', now, 'fence', fence, 'attempts', attempts, 'wait_us', wait)
        end
        observe('queue_wait', BUCKETS_QUEUE_WAIT, PRIORITY_NAMES[p], tonumber(wait) / 1000000)
        event({'started', id, f[2], p, f[9] or '', worker, attempts, wait})
        started[#started + 1] = id
        local o = #out
        out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5], out[o + 6] =
          id, p, fence, attempts, f[2], f[3]
        out[o + 7], out[o + 8], out[o + 9], out[o + 10], out[o + 11], out[o + 12] =
          f[4], f[5], f[6], wait, now, f[11] or ''
      end
    end
  end
  if not started[1] then
    -- Nothing pending in these priorities: their wake-up tokens are stale for every worker
    -- (left by a burst while slots were busy); drop them so idle slots do not wake for
    -- nothing, one empty take each.
    local stale = {}
    for _, p in ipairs(open) do stale[#stale + 1] = k_notify(p) end
    if stale[1] then redis.call('DEL', unpack(stale)) end
    return {'empty'}
  end
  redis.call('SADD', k_worker_active(worker), unpack(started))
  out[2] = #started
  return out
end
